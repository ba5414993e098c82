"""Process helpers for the test fleet: find, wait for and stop processes by PID.

Everything here works on explicit PIDs (and their descendants found through
/proc); nothing ever matches processes by name.  A PID is remembered together
with its start time (field 22 of /proc/PID/stat) so that a recycled PID is
never signalled by mistake.
"""

import errno
import os
import signal
import time

__all__ = [
    "ProcessGone",
    "start_time",
    "pid_alive",
    "alive",
    "children_map",
    "descendants",
    "remember",
    "signal_pids",
    "terminate",
    "stop_tree",
    "wait_until",
    "listening_tcp",
    "tail",
]


class ProcessGone(Exception):
    pass


def _stat_fields(pid):
    """Fields of /proc/PID/stat after the command name, or None if gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError as e:
        if e.errno in (errno.ESRCH, errno.ENOENT):
            return None
        raise
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rindex(b")") + 2:].split()
    return rest  # rest[0] = state, rest[1] = ppid, rest[19] = starttime


def start_time(pid):
    """Start time of PID in clock ticks since boot, or None if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return int(fields[19])


def pid_alive(pid, started=None):
    """True if PID exists, is not a zombie, and (if given) has that start time."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in (b"Z", b"X"):
        return False
    if started is not None and int(fields[19]) != started:
        return False
    return True


def alive(procs):
    """The subset of {pid: start_time} that is still alive."""
    return {p: s for p, s in procs.items() if pid_alive(p, s)}


def children_map():
    """{ppid: [pid, ...]} for every process currently in /proc."""
    result = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is None:
            continue
        result.setdefault(int(fields[1]), []).append(int(name))
    return result


def descendants(pids, cmap=None):
    """All live descendants of the given PIDs (not including them)."""
    if isinstance(pids, int):
        pids = [pids]
    cmap = children_map() if cmap is None else cmap
    out = []
    todo = list(pids)
    seen = set(todo)
    while todo:
        for child in cmap.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                out.append(child)
                todo.append(child)
    return out


def remember(pids):
    """{pid: start_time} for the live ones among PIDs."""
    out = {}
    for p in pids:
        s = start_time(p)
        if s is not None:
            out[p] = s
    return out


def signal_pids(procs, sig):
    """Send SIG to each live {pid: start_time}; ignore the ones already gone."""
    for pid, started in procs.items():
        if not pid_alive(pid, started):
            continue
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_until(predicate, timeout, interval=0.02):
    """Poll PREDICATE until it returns a true value or TIMEOUT seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def terminate(procs, timeout=5.0, kill_timeout=5.0, popens=()):
    """SIGTERM {pid: start_time}; SIGKILL what is left after TIMEOUT.

    POPENS (subprocess.Popen objects among them) are reaped so no zombie stays.
    Returns the {pid: start_time} still alive at the end (normally empty).
    """
    procs = dict(procs)

    def reap():
        for p in popens:
            try:
                p.poll()
            except Exception:
                pass

    def left():
        reap()
        return alive(procs)

    signal_pids(procs, signal.SIGTERM)
    wait_until(lambda: not left(), timeout)
    rest = left()
    if rest:
        signal_pids(rest, signal.SIGKILL)
        wait_until(lambda: not left(), kill_timeout)
    return left()


def stop_tree(roots, timeout=5.0, kill_timeout=5.0, popens=()):
    """Stop the processes ROOTS and all their descendants, race-free.

    Every process of the tree is first frozen with SIGSTOP (repeating until no
    new child shows up), so nothing can fork or be reparented away while the
    tree is collected; then all get SIGTERM + SIGCONT, and SIGKILL after
    TIMEOUT.  Returns the {pid: start_time} still alive (normally empty).
    """
    frozen = {}
    todo = remember(roots)
    while todo:
        signal_pids(todo, signal.SIGSTOP)
        frozen.update(todo)
        found = descendants(list(frozen))
        todo = {p: s for p, s in remember(found).items() if p not in frozen}
    signal_pids(frozen, signal.SIGTERM)
    signal_pids(frozen, signal.SIGCONT)
    return terminate(frozen, timeout=timeout, kill_timeout=kill_timeout, popens=popens)


def _hex_ipv4(h):
    # /proc/net/tcp prints the address as the in-memory u32 in host order.
    n = int(h, 16)
    b = n.to_bytes(4, "little")
    return "%d.%d.%d.%d" % tuple(b)


def listening_tcp(pids):
    """{(addr, port)} of IPv4 TCP sockets in LISTEN state held open by PIDS."""
    inodes = set()
    for pid in pids:
        fd_dir = "/proc/%d/fd" % pid
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in names:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    out = set()
    if not inodes:
        return out
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] != "0A":  # TCP_LISTEN
                continue
            if parts[9] not in inodes:
                continue
            addr, port = parts[1].split(":")
            out.add((_hex_ipv4(addr), int(port, 16)))
    return out


def tail(path, lines=40):
    """The last LINES lines of a text file ('' if it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
