"""Starting agents as local child processes (Local, Sudo and OpenSSH all do).

The stdlib ``subprocess.Popen`` is used on purpose, not ``gevent.subprocess``:
it forks with vfork and closes fds with close_range, so a spawn costs the same
with 10 tunnels open as with 5000. gevent's Popen forks the whole controller,
which grows with every tunnel and made a naive fan-out quadratic.
Exit is awaited on a pidfd, cooperatively, with a deadline.
"""
from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
from typing import Sequence

import gevent
from gevent.monkey import is_module_patched
from gevent.socket import wait_read

from ..errors import ConnectError, FileDescriptorsExhausted, InterpreterNotFound
from .base import AgentPipes

_FD_ERRORS = (errno.EMFILE, errno.ENFILE)


class ChildProcess:
    """An agent running as a child process in its own session."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def kill(self) -> None:
        if self.popen.returncode is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except OSError:
            pass

    def wait(self, timeout: float) -> int | None:
        """Wait cooperatively up to ``timeout`` seconds; the exit status or None."""
        if self.popen.poll() is not None:
            return self.popen.returncode
        try:
            pidfd = os.pidfd_open(self.popen.pid)
        except OSError:
            return self.popen.poll()
        try:
            wait_read(pidfd, timeout=timeout)
        except Exception:  # noqa: BLE001 - socket.timeout or a closed fd
            pass
        finally:
            os.close(pidfd)
        return self.popen.poll()

    def stop(self, grace: float) -> int | None:
        status = self.wait(grace)
        if status is None:
            self.kill()
            status = self.wait(5.0)
        return status


def spawn(host: str, argv: Sequence[str], env: dict[str, str] | None = None) -> AgentPipes:
    """Start ``argv`` with a socket on stdin/stdout and a pipe on stderr."""
    try:
        parent, child = socket.socketpair()
    except OSError as exc:
        raise _spawn_error(host, argv, exc) from exc
    err_r = err_w = -1
    try:
        err_r, err_w = os.pipe()
        popen = _start(list(argv), child.fileno(), err_w, env)
    except OSError as exc:
        parent.close()
        if err_r >= 0:
            os.close(err_r)
        raise _spawn_error(host, argv, exc) from exc
    finally:
        child.close()
        if err_w >= 0:
            os.close(err_w)
    return AgentPipes(parent, err_r, ChildProcess(popen))


def _popen(argv: list[str], sock_fd: int, err_w: int,
           env: dict[str, str] | None) -> subprocess.Popen[bytes] | OSError:
    # The error is returned, not raised: gevent's threadpool would print the
    # traceback of an exception raised in it.
    try:
        return subprocess.Popen(argv, stdin=sock_fd, stdout=sock_fd, stderr=err_w, env=env,
                                close_fds=True, start_new_session=True)
    except OSError as exc:
        return exc


def _start(argv: list[str], sock_fd: int, err_w: int,
           env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    """Popen in one of the hub's few spawner threads, not in the hub itself.

    With vfork the parent waits until the child has exec'd; on a busy machine
    that wait is the child's turn on a CPU (10 ms each was measured while
    2000 agents started). In the calling thread it would stop every tunnel's
    I/O; in a thread only the spawn waits.
    """
    hub = gevent.get_hub()
    if gevent.getcurrent() is hub or is_module_patched('subprocess'):
        # Patched, Popen is gevent's own and cooperative; it must stay on the hub's thread.
        result = _popen(argv, sock_fd, err_w, env)
    else:
        result = hub.threadpool.apply(_popen, (argv, sock_fd, err_w, env))
    if isinstance(result, OSError):
        raise result
    return result  # type: ignore[no-any-return]


def _spawn_error(host: str, argv: Sequence[str], exc: OSError) -> ConnectError:
    if exc.errno in _FD_ERRORS:
        return FileDescriptorsExhausted(
            f'out of file descriptors starting the agent ({exc.strerror}): every open '
            'tunnel holds 2; close tunnels you are done with, work in smaller groups, '
            'or raise the open-file limit', host)
    if isinstance(exc, FileNotFoundError):
        return InterpreterNotFound(f'cannot run {argv[0]!r}: {exc.strerror}', host)
    return ConnectError(f'cannot run {argv[0]!r}: {exc}', host)
