"""BaseTunnel: one agent end to end (connect, call, put, fetch, close).

A template method base. Transports implement the hooks:

* ``_start()`` (required): start the agent with ``self._agent_argv()`` and
  return its :class:`~chopsticks.transports.base.AgentPipes`;
* ``_diagnose(stderr, status)``: turn a start that ended before the
  handshake into the right :class:`~chopsticks.errors.ConnectError`.

Everything above the hooks is shared, so every transport gives the same
``call`` / ``put`` / ``fetch`` / ``close`` behaviour.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any, Callable, ClassVar

import gevent
from gevent.event import AsyncResult
from gevent.lock import Semaphore

from . import _bootstrap, _codec
from ._connection import OP_LOST, Connection
from ._results import remote_error
from ._serialize import dumps_call, protocol_for, reference_call
from .agent import _wire as wire
from .errors import CallTimeout, ChopsticksError, ConnectError, ConnectTimeout, \
    ConnectionLost, ProtocolError, RemoteFileError
from .transports.base import AgentPipes, AgentProcess

CHUNK = 256 * 1024


class BaseTunnel:
    """A connection to one agent. Connects lazily; ``with`` closes it."""

    #: The remote interpreter unless ``python=`` is given (set it per class).
    python3: ClassVar[str] = '/usr/bin/python3'
    #: Seconds allowed for starting the agent and its handshake.
    connect_timeout: float = 10.0
    #: Seconds an agent gets to exit on close before it is killed.
    close_grace: float = 2.0
    #: Write the agent's stderr lines, prefixed ``[host] ``, to this process's
    #: stderr. They always go to the ``chopsticks`` logger too; set this to
    #: False (per class or instance) to leave them to logging alone.
    echo_stderr: bool = True

    def __init__(self, host: str, *, python: str | None = None,
                 connect_timeout: float | None = None) -> None:
        if not isinstance(host, str) or not host:
            raise ValueError(f'host must be a non-empty string, not {host!r}')
        self.host = host
        self.python = python
        if connect_timeout is not None:
            self.connect_timeout = float(connect_timeout)
        self._conn: Connection | None = None
        self._process: AgentProcess | None = None
        self._protocol = 5
        self._python_version: tuple[int, ...] | None = None
        self._connect_lock = Semaphore()

    # Identity
    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.host!r})'

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.host == self.host  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.host))

    def __enter__(self) -> BaseTunnel:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Hooks
    def _start(self) -> AgentPipes:
        """Start the agent; raise a ConnectError subclass when that fails."""
        raise NotImplementedError

    def _diagnose(self, stderr: str, status: int | None) -> ConnectError:
        """The error for an agent that ended before its handshake."""
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else ''
        return ConnectError(
            f'the agent exited before its handshake (status {status})'
            + (f': {detail}' if detail else ''), self.host)

    # Connecting
    @property
    def interpreter(self) -> str:
        """The remote Python this tunnel starts."""
        return self.python or type(self).python3

    def _agent_argv(self) -> list[str]:
        return _bootstrap.agent_argv(self.interpreter)

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    @property
    def python_version(self) -> tuple[int, ...] | None:
        """The agent's ``sys.version_info[:3]``, once connected."""
        return self._python_version

    def connect(self) -> None:
        """Start the agent and wait for its handshake, within ``connect_timeout``."""
        if self.connected:
            return
        with self._connect_lock:
            if not self.connected:
                self._connect()

    def _connect(self) -> None:
        self._reap()
        pipes = self._start()
        self._process = pipes.process
        try:
            conn = Connection(self.host, pipes.sock, pipes.stderr_fd, self._on_lost,
                              self.echo_stderr)
        except OSError as exc:
            pipes.process.kill()
            raise ConnectError(f'cannot watch the agent pipes: {exc}', self.host) from exc
        self._conn = conn
        try:
            conn.send_raw(_bootstrap.stage2())
            conn.send(wire.OP_CONFIG, 0, _codec.packb({'host': self.host}))
        except ChopsticksError:
            pass  # the failure shows as an EOF below
        if not conn.hello_event.wait(self.connect_timeout):
            self._abandon(conn)
            raise ConnectTimeout(
                f'no handshake within {self.connect_timeout:g}s'
                + self._stderr_note(conn), self.host)
        if conn.hello is None and isinstance(conn.error, ProtocolError):
            self._abandon(conn)
            raise conn.error
        if conn.hello is None:
            status = pipes.process.stop(min(1.0, self.connect_timeout))
            self._process = None
            conn.close_stderr()
            self._conn = None
            raise self._diagnose('\n'.join(conn.stderr_tail), status)
        hello = conn.hello
        if not isinstance(hello, dict) or hello.get('v') != wire.PROTOCOL_VERSION:
            self._abandon(conn)
            raise ProtocolError(f'agent speaks protocol {hello!r:.80}, expected '
                                f'version {wire.PROTOCOL_VERSION}', self.host)
        try:
            self._python_version = tuple(int(v) for v in hello['python'])
        except (KeyError, TypeError, ValueError):
            self._abandon(conn)
            raise ProtocolError('malformed handshake', self.host) from None
        self._protocol = protocol_for(self._python_version)

    def _stderr_note(self, conn: Connection) -> str:
        conn.drain_stderr()
        return f': {conn.stderr_tail[-1]}' if conn.stderr_tail else ''

    def _abandon(self, conn: Connection) -> None:
        conn.close()
        self._conn = None
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            gevent.spawn(_reap, process, conn, self.close_grace)

    def _on_lost(self, exc: ChopsticksError) -> None:
        """The connection failed (in the hub): reap the agent in the background."""
        conn = self._conn
        if conn is not None and conn.error is exc:
            self._conn = None
            process, self._process = self._process, None
            gevent.spawn(_reap, process, conn, self.close_grace)

    def _reap(self, conn: Connection | None = None) -> None:
        process, self._process = self._process, None
        _reap(process, conn, self.close_grace)

    def close(self) -> None:
        """Close the pipes and wait (up to ``close_grace``) for the agent to exit.

        The agent's last stderr lines are shown before this returns. Calling
        again, or on a tunnel never connected, does nothing; a later call
        reconnects.
        """
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self._reap(conn)

    # Requests
    def _payload(self, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any],
                 cache: dict[Any, tuple[int, bytes]] | None = None) -> tuple[int, bytes]:
        """The call frame's ``(op, body)``; ``cache`` shares it across a group."""
        if cache is None:
            cache = {}
        if 'ref' not in cache:
            ref = reference_call(fn, args, kwargs)
            cache['ref'] = (wire.OP_CALL_REF, ref) if ref is not None else None  # type: ignore[assignment]
        if cache['ref'] is not None:
            return cache['ref']
        payload = cache.get(self._protocol)
        if payload is None:
            payload = cache[self._protocol] = (
                wire.OP_CALL, dumps_call(fn, args, kwargs, self._protocol))
        return payload

    def _live_conn(self) -> Connection:
        conn = self._conn
        if conn is None or conn.closed:
            raise ConnectionLost('not connected', self.host)
        return conn

    def _send_call(self, payload: tuple[int, bytes],
                   on_done: Callable[[bool, Any], None]) -> int:
        """Send a call; ``on_done(ok, value_or_exception)`` runs once, in the hub."""
        conn = self._live_conn()
        req_id = conn.new_id()
        host = self.host

        def handler(op: int, body: Any) -> None:
            if op == wire.OP_RESULT:
                value = conn.decode(body)
                del conn.handlers[req_id]
                on_done(True, value)
            elif op == wire.OP_ERROR:
                info = conn.decode(body)
                del conn.handlers[req_id]
                on_done(False, remote_error(host, info))
            elif op == OP_LOST:
                on_done(False, body)

        conn.handlers[req_id] = handler
        conn.send(payload[0], req_id, payload[1])
        return req_id

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None,
             **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the remote host and return its result.

        Raises :class:`~chopsticks.errors.RemoteException` if it raised there.
        With ``timeout`` (seconds), an overrunning call raises
        :class:`~chopsticks.errors.CallTimeout` and its agent is killed (the
        next call starts a new one). ``timeout`` is taken by chopsticks, so it
        never reaches ``fn``.
        """
        self.connect()
        payload = self._payload(fn, args, kwargs)
        result: AsyncResult = AsyncResult()
        self._send_call(payload, _setter(result))
        return self._wait(result, timeout)

    def _wait(self, result: AsyncResult, timeout: float | None) -> Any:
        try:
            return result.get(timeout=timeout)
        except gevent.Timeout:
            self._kill_for_timeout()
            raise CallTimeout(f'did not finish within {timeout:g}s; agent stopped',
                              self.host) from None

    def _kill_for_timeout(self) -> None:
        """Stop an agent whose call overran: fail its requests, kill, reap in the background."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fail(CallTimeout('the tunnel was stopped by a call timeout', self.host))
        process, self._process = self._process, None
        if process is not None:
            process.kill()
        if process is not None or conn is not None:
            gevent.spawn(_reap, process, conn, self.close_grace)

    def put(self, local_path: str, remote_path: str | None = None,
            mode: int = 0o644, *, timeout: float | None = None) -> dict[str, Any]:
        """Copy a local file to the remote host.

        Streams in chunks, verifies the SHA-1 and renames into place, so a
        failure leaves no partial file. ``remote_path`` defaults to a new
        temporary file on the remote (its path is in the result). Returns
        ``{'remote_path', 'sha1sum', 'size'}``.
        """
        self.connect()
        result: AsyncResult = AsyncResult()
        deadline = gevent.Timeout(timeout) if timeout is not None else None
        if deadline is not None:
            deadline.start()
        try:
            self._put(local_path, remote_path, mode, _setter(result))
            return result.get()  # type: ignore[no-any-return]
        except gevent.Timeout as exc:
            if exc is not deadline:
                raise
            self._kill_for_timeout()
            raise CallTimeout(f'put did not finish within {timeout:g}s; agent stopped',
                              self.host) from None
        finally:
            if deadline is not None:
                deadline.cancel()

    def _put(self, local_path: str, remote_path: str | None, mode: int,
             on_done: Callable[[bool, Any], None], sha1sum: str | None = None) -> None:
        """Stream a put from the calling greenlet; ``on_done`` gets the summary.

        With ``sha1sum`` known (a group put hashes the file once), the chunks
        are not hashed again here.
        """
        conn = self._live_conn()
        req_id = conn.new_id()
        finished = []

        def handler(op: int, body: Any) -> None:
            if op == wire.OP_RESULT:
                value = conn.decode(body)
                conn.handlers.pop(req_id, None)
                finished.append(True)
                try:
                    value = _check_summary(self.host, value, PUT_KEYS)
                except ProtocolError as exc:
                    on_done(False, exc)
                else:
                    on_done(True, value)
            elif op == wire.OP_ERROR:
                info = conn.decode(body)
                conn.handlers.pop(req_id, None)
                finished.append(True)
                on_done(False, remote_error(self.host, info))
            elif op == OP_LOST:
                finished.append(True)
                on_done(False, body)

        try:
            f = open(local_path, 'rb')
        except OSError as exc:
            on_done(False, exc)
            return
        conn.handlers[req_id] = handler
        try:
            with f:
                conn.send(wire.OP_PUT_BEGIN, req_id,
                          _codec.packb({'path': remote_path, 'mode': mode}))
                sha1 = None if sha1sum else hashlib.sha1()
                while not finished:
                    chunk = f.read(CHUNK)
                    if not chunk:
                        digest = sha1sum or sha1.hexdigest()  # type: ignore[union-attr]
                        conn.send(wire.OP_PUT_END, req_id, _codec.packb({'sha1': digest}))
                        break
                    if sha1 is not None:
                        sha1.update(chunk)
                    conn.send(wire.OP_PUT_DATA, req_id, chunk)
                    conn.wait_drained()
        except ChopsticksError:
            pass  # the connection failed: the handler has the error already
        except OSError as exc:
            conn.handlers.pop(req_id, None)
            if not finished:
                on_done(False, exc)

    def fetch(self, remote_path: str, local_path: str | None = None, *,
              timeout: float | None = None) -> dict[str, Any]:
        """Copy a remote file here.

        Streams in chunks into a temporary file beside ``local_path``, checks
        size and SHA-1, then renames: a failure leaves no partial file.
        ``local_path`` defaults to a new local temporary file. Returns
        ``{'local_path', 'remote_path', 'sha1sum', 'size'}``.
        """
        self.connect()
        result: AsyncResult = AsyncResult()
        self._start_fetch(remote_path, local_path, _setter(result))
        return self._wait(result, timeout)  # type: ignore[no-any-return]

    def _start_fetch(self, remote_path: str, local_path: str | None,
                     on_done: Callable[[bool, Any], None]) -> None:
        """Ask for a file; it is written as it arrives, in the hub."""
        if local_path is None:
            fd, local_path = tempfile.mkstemp(prefix='chopsticks-fetch-')
            os.close(fd)
        conn = self._live_conn()
        try:
            sink = _FetchSink(self.host, local_path, on_done)
        except OSError as exc:
            on_done(False, exc)
            return
        req_id = conn.new_id()

        def handler(op: int, body: Any) -> None:
            if op == wire.OP_FETCH_DATA:
                sink.write(body)
            elif op == wire.OP_FETCH_END:
                summary = conn.decode(body)
                conn.handlers.pop(req_id, None)
                sink.finish(summary)
            elif op == wire.OP_ERROR:
                info = conn.decode(body)
                conn.handlers.pop(req_id, None)
                sink.fail(remote_error(self.host, info))
            elif op == OP_LOST:
                sink.fail(body)

        conn.handlers[req_id] = handler
        try:
            conn.send(wire.OP_FETCH, req_id, _codec.packb({'path': remote_path}))
        except ChopsticksError as exc:
            conn.handlers.pop(req_id, None)
            sink.fail(exc)


def _reap(process: AgentProcess | None, conn: Connection | None, grace: float) -> None:
    """Wait for the agent to exit (killing it after ``grace``), then close stderr."""
    if process is not None:
        process.stop(grace)
    if conn is not None:
        conn.close_stderr()


PUT_KEYS = ('remote_path', 'sha1sum', 'size')
FETCH_KEYS = ('local_path', 'remote_path', 'sha1sum', 'size')


def _setter(result: AsyncResult) -> Callable[[bool, Any], None]:
    def on_done(ok: bool, value: Any) -> None:
        if ok:
            result.set(value)
        else:
            result.set_exception(value)
    return on_done


def _check_summary(host: str, value: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != set(keys):
        raise ProtocolError(f'malformed file summary: {value!r:.80}', host)
    return value


class _FetchSink:
    """Receives a fetch in the hub: temp file, checksum, rename."""

    def __init__(self, host: str, local_path: str,
                 on_done: Callable[[bool, Any], None]) -> None:
        self.host = host
        self.local_path = os.path.abspath(local_path)
        self.on_done = on_done
        self.ended = False
        directory, name = os.path.split(self.local_path)
        fd, self.tmp = tempfile.mkstemp(prefix=f'.{name}.', suffix='.part', dir=directory)
        self.file = os.fdopen(fd, 'wb')
        self.sha1 = hashlib.sha1()
        self.size = 0

    def write(self, data: bytes) -> None:
        if self.ended:
            return
        try:
            self.file.write(data)
        except OSError as exc:
            self.fail(RemoteFileError(f'cannot write {self.local_path}: {exc}', self.host))
            return
        self.sha1.update(data)
        self.size += len(data)

    def finish(self, summary: Any) -> None:
        if self.ended:
            return
        try:
            summary = _check_summary(self.host, summary, PUT_KEYS)
        except ProtocolError as exc:
            self.fail(exc)
            return
        digest = self.sha1.hexdigest()
        if digest != summary['sha1sum'] or self.size != summary['size']:
            self.fail(RemoteFileError(
                f'checksum mismatch fetching {summary["remote_path"]}: received '
                f'{self.size} bytes sha1 {digest}, sent {summary["size"]} bytes '
                f'sha1 {summary["sha1sum"]}', self.host))
            return
        try:
            self.file.close()
            os.replace(self.tmp, self.local_path)
        except OSError as exc:
            self.fail(RemoteFileError(f'cannot write {self.local_path}: {exc}', self.host))
            return
        self.ended = True
        self.on_done(True, {'local_path': self.local_path,
                            'remote_path': summary['remote_path'],
                            'sha1sum': digest, 'size': self.size})

    def fail(self, exc: BaseException) -> None:
        if self.ended:
            return
        self.ended = True
        self.file.close()
        try:
            os.unlink(self.tmp)
        except OSError:
            pass
        self.on_done(False, exc)
