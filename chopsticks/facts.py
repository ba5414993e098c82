"""Facts about a host: plain functions to pass to ``call``.

Each runs on the remote (any Python from 2.7 on, standard library only) and
returns plain data that travels back through the safe codec::

    tun.call(python_version)          # (3, 11, 2)
    group.call(hostname)              # {'web1': 'web1', ...}
"""
import os
import platform
import socket
import sys


def _text(value):
    # On a Python 2 agent, native strings are bytes; facts are text.
    if isinstance(value, bytes) and str is bytes:
        return value.decode('utf-8', 'replace')
    return value


def python_version(short=False):
    """The interpreter version: ``(3, 11, 2)``, or ``'3.11'`` with ``short=True``."""
    if short:
        return _text('%d.%d' % sys.version_info[:2])
    return tuple(sys.version_info[:3])


def python_executable():
    """The path of the remote interpreter running the agent."""
    return _text(sys.executable)


def hostname():
    """The remote host's name as it knows itself (``socket.gethostname()``)."""
    return _text(socket.gethostname())


def ip():
    """The remote's primary IP address: the source address of its default route.

    No packet is sent (a UDP socket is only connected); falls back to the
    address of the host name, then to ``'127.0.0.1'``.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # 192.0.2.1 is TEST-NET-1: connect() on UDP picks a route, sends nothing.
        s.connect(('192.0.2.1', 9))
        return _text(s.getsockname()[0])
    except (OSError, socket.error):
        try:
            return _text(socket.gethostbyname(socket.gethostname()))
        except (OSError, socket.error):
            return u'127.0.0.1'
    finally:
        s.close()


def os_release():
    """The fields of ``/etc/os-release`` as a dict (``{}`` if there is none),
    plus ``'system'`` and ``'kernel'`` from :mod:`platform`."""
    info = {}
    for path in ('/etc/os-release', '/usr/lib/os-release'):
        try:
            f = open(path)
        except (IOError, OSError):
            continue
        try:
            for line in f:
                key, sep, value = line.strip().partition('=')
                if sep and key and not key.startswith('#'):
                    info[_text(key)] = _text(value.strip().strip('"\''))
        finally:
            f.close()
        break
    info[u'system'] = _text(platform.system())
    info[u'kernel'] = _text(platform.release())
    return info


def cpu_count():
    """The number of CPUs usable by the agent (its affinity mask where known)."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    import multiprocessing
    return multiprocessing.cpu_count()


def memory():
    """Memory in bytes from ``/proc/meminfo``: ``{'total', 'available', 'free'}``.

    Values are None where the platform has no /proc/meminfo.
    """
    fields = {'MemTotal': u'total', 'MemAvailable': u'available', 'MemFree': u'free'}
    result = dict.fromkeys(fields.values())
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                key, _, rest = line.partition(':')
                if key in fields:
                    result[fields[key]] = int(rest.split()[0]) * 1024
    except (IOError, OSError):
        pass
    return result
