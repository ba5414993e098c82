"""Bridges for agents that are not local child processes (paramiko, Docker).

The multiplexer needs one real socket for the agent's stdin/stdout and one
readable fd for its stderr. A paramiko channel or a Docker attach stream is
neither, so a :class:`Bridge` makes two socketpairs: the tunnel's ends go to
the :class:`~chopsticks._connection.Connection`, the other ends (``inner``
and ``err``) are pumped to and from the backend by the transport.

stderr travels over a socketpair rather than an ``os.pipe()``: the
multiplexer only ``os.read``\\ s the fd, and a socket gives the pumps
cooperative writes when the program is monkey-patched (a blocking
``os.write`` to a full pipe would stall the one thread that drains it).

Also here: checking for an optional client library (:func:`require`),
running blocking client calls off the hub (:func:`offload`), and the
greenlet-side socket helpers the Docker pumps use.
"""
from __future__ import annotations

import errno
import os
import socket
from typing import Any, Callable, TypeVar

import gevent
from gevent import monkey
from gevent.socket import wait_read, wait_write

from ..errors import ConnectError, FileDescriptorsExhausted

T = TypeVar('T')
READ_SIZE = 256 * 1024


class Bridge:
    """Two socketpairs: ``outer``/``err_fd`` for the tunnel, ``inner``/``err`` for pumps."""

    def __init__(self, host: str) -> None:
        try:
            self.outer, self.inner = socket.socketpair()
        except OSError as exc:
            raise _fd_error(host, exc) from exc
        try:
            err_outer, self.err = socket.socketpair()
        except OSError as exc:
            self.outer.close()
            self.inner.close()
            raise _fd_error(host, exc) from exc
        # The multiplexer reads the stderr fd with os.read and closes it.
        self.err_fd: int | None = err_outer.detach()

    def close_outer(self) -> None:
        """Close the tunnel's ends (only while the multiplexer does not own them)."""
        self.outer.close()
        if self.err_fd is not None:
            os.close(self.err_fd)
            self.err_fd = None

    def close_inner(self) -> None:
        """Close the pumps' ends: the tunnel then reads EOF on both."""
        for sock in (self.inner, self.err):
            try:
                sock.close()
            except OSError:
                pass


def _fd_error(host: str, exc: OSError) -> ConnectError:
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        return FileDescriptorsExhausted(
            f'out of file descriptors opening the tunnel ({exc.strerror}): every open '
            'tunnel holds several; close tunnels you are done with, work in smaller '
            'groups, or raise the open-file limit', host)
    return ConnectError(f'cannot create the tunnel pipes: {exc}', host)


def require(module: str, extra: str, what: str) -> None:
    """Raise ImportError naming the extra to install if ``module`` is missing.

    Checked without importing it: paramiko and docker each take ~150 ms to
    import, paid on the first connect instead.
    """
    import importlib.util
    import sys
    try:
        found = importlib.util.find_spec(module) is not None
    except ValueError:  # in sys.modules with no spec: imported, or blocked with None
        found = sys.modules.get(module) is not None
    if not found:
        raise ImportError(f"{what} needs the {module} package: "
                          f"pip install 'chopsticks[{extra}]'")


def patched() -> bool:
    """True when the program monkey-patched sockets (and so threads are greenlets)."""
    return monkey.is_module_patched('socket')


def offload(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call without stalling the hub; block only this greenlet.

    Unpatched, the call runs in gevent's thread pool. Monkey-patched, it runs
    right here: its sockets are cooperative already, and gevent's patched
    sockets must not be used from a foreign OS thread.
    """
    if patched():
        return fn(*args, **kwargs)
    ok, value = gevent.get_hub().threadpool.apply(_capture, (fn, args, kwargs))
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


def _capture(fn: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> tuple[bool, Any]:
    # Return the exception instead of raising it: the thread pool would print it.
    try:
        return True, fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - re-raised in the calling greenlet
        return False, exc


def send_all(sock: socket.socket, data: bytes | memoryview) -> None:
    """Write all of ``data`` to a non-blocking socket, waiting cooperatively."""
    view = memoryview(data)
    fd = sock.fileno()
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            wait_write(fd)
            continue
        view = view[sent:]


def recv_some(sock: socket.socket, size: int = READ_SIZE) -> bytes:
    """Read what a non-blocking socket has, waiting cooperatively; b'' at EOF."""
    fd = sock.fileno()
    while True:
        try:
            return sock.recv(size)
        except BlockingIOError:
            wait_read(fd)
