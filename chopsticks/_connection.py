"""The multiplexer: one agent's framed pipe, driven by callbacks of gevent's hub.

No greenlet per tunnel: a readable pipe wakes a callback in the hub, which
parses whole frames and hands each to the handler registered for its request
id. Handlers therefore run in the hub and must never block or switch; they
record results and wake waiters (a whole group wakes its caller once per
batch, not once per host). Import requests are answered inline from the
shared import server.

Whatever the agent sends is decoded with the safe codec only. A frame that
is oversize or undecodable fails this connection (every pending request gets
the error), never the controller or another tunnel.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
from collections import deque
from typing import Any, Callable

import gevent
from gevent.event import Event

from . import _codec
from ._imports import SERVER
from .agent import _wire as wire
from .errors import ChopsticksError, ConnectionLost, ProtocolError

log = logging.getLogger('chopsticks')

Handler = Callable[[int, Any], None]
"""Called in the hub as ``handler(op, body)`` for each frame of its request."""

HEADER = wire.HEADER
HEADER_SIZE = wire.HEADER_SIZE
READ_SIZE = 256 * 1024
#: Largest frame accepted from an agent (a result, an import request, a chunk).
MAX_FRAME = 256 * 1024 * 1024
#: Outgoing bytes buffered before writers are asked to wait (put back-pressure).
HIGH_WATER = 256 * 1024
STDERR_TAIL = 20
#: Frames up to this size are copied into one buffer with their header.
SMALL_FRAME = 64 * 1024
#: Output tolerated before the agent's sync marker (a chatty login script).
MAX_NOISE = 64 * 1024


class Connection:
    """Frames in and out of one agent; owns the socket and the stderr pipe."""

    def __init__(self, host: str, sock: socket.socket, stderr_fd: int | None,
                 on_lost: Callable[[ChopsticksError], None] | None = None,
                 echo_stderr: bool = True) -> None:
        self.host = host
        self.echo_stderr = echo_stderr
        self.sock = sock
        sock.setblocking(False)
        self.fd = sock.fileno()
        self.stderr_fd = stderr_fd
        self.on_lost = on_lost
        self.handlers: dict[int, Handler] = {}
        self.hello: Any = None
        self.hello_event = Event()
        self.error: ChopsticksError | None = None
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL)
        #: Directories of the packages served to this agent: its resource roots.
        self.resource_roots: set[str] = set()
        self._next_id = 0
        self._inbuf = bytearray()
        self._synced = False
        self._stderr_buf = b''
        self._out: deque[memoryview] = deque()
        self._out_bytes = 0
        self._drained = Event()
        self._drained.set()
        loop = gevent.get_hub().loop
        self._reader = loop.io(self.fd, 1)
        self._writer = loop.io(self.fd, 2)
        self._reader.start(self._on_readable)
        self._err_reader = None
        if stderr_fd is not None:
            os.set_blocking(stderr_fd, False)
            self._err_reader = loop.io(stderr_fd, 1)
            self._err_reader.start(self._on_stderr)

    @property
    def closed(self) -> bool:
        return self.error is not None

    def new_id(self) -> int:
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF or 1
        return self._next_id

    # Writing
    def send(self, op: int, req_id: int, body: bytes | memoryview) -> None:
        """Queue one frame; written now if the pipe takes it (one syscall)."""
        header = HEADER.pack(len(body), req_id, op)
        if len(body) <= SMALL_FRAME:
            self.send_raw(header + body)
        else:
            # Large bodies are not copied: header and body go out together.
            self._queue(header)
            self.send_raw(body)

    def send_raw(self, data: bytes | memoryview) -> None:
        self._queue(data)
        if not self._writer.active:
            self._flush()

    def _queue(self, data: bytes | memoryview) -> None:
        if self.error is not None:
            raise self.error
        self._out.append(memoryview(data))
        self._out_bytes += len(data)

    def wait_drained(self, timeout: float | None = None) -> bool:
        """Block the calling greenlet until the output buffer is below the high water."""
        if self._out_bytes <= HIGH_WATER or self.error is not None:
            return True
        self._drained.clear()
        return self._drained.wait(timeout)

    def _flush(self) -> None:
        out = self._out
        try:
            while out:
                sent = self.sock.sendmsg(list(out)[:64])
                self._out_bytes -= sent
                while sent:
                    head = out[0]
                    if sent >= len(head):
                        sent -= len(head)
                        out.popleft()
                    else:
                        out[0] = head[sent:]
                        sent = 0
        except BlockingIOError:
            pass
        except OSError as exc:
            self.fail(ConnectionLost(f'write failed: {exc}', self.host))
            return
        if out:
            if not self._writer.active:
                self._writer.start(self._flush)
        else:
            if self._writer.active:
                self._writer.stop()
        if self._out_bytes <= HIGH_WATER:
            self._drained.set()

    # Reading
    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self.fail(ConnectionLost(f'read failed: {exc}', self.host))
            return
        if not data:
            self.fail(ConnectionLost(self._eof_reason(), self.host))
            return
        buf = self._inbuf
        buf += data
        if not self._synced and not self._sync(buf):
            return
        pos = 0
        end = len(buf)
        try:
            while end - pos >= HEADER_SIZE:
                size, req_id, op = HEADER.unpack_from(buf, pos)
                if size > MAX_FRAME:
                    raise ProtocolError(f'frame of {size} bytes exceeds the limit '
                                        f'of {MAX_FRAME}', self.host)
                if end - pos - HEADER_SIZE < size:
                    break
                start = pos + HEADER_SIZE
                body = bytes(buf[start:start + size])
                pos = start + size
                self._dispatch(op, req_id, body)
                if self.error is not None:
                    return
        except ChopsticksError as exc:
            self.fail(exc)
            return
        del buf[:pos]

    def _sync(self, buf: bytearray) -> bool:
        """Skip what precedes the agent's marker: a login script may print first."""
        index = buf.find(wire.SYNC)
        if index < 0:
            if len(buf) > MAX_NOISE:
                self.fail(ProtocolError(
                    f'no agent handshake in the first {MAX_NOISE} bytes of output: '
                    f'{bytes(buf[:60])!r}...', self.host))
            return False
        if index:
            for line in bytes(buf[:index]).splitlines():
                self._emit_stderr(b'(stdout before the agent started) ' + line)
        del buf[:index + len(wire.SYNC)]
        self._synced = True
        return True

    def _dispatch(self, op: int, req_id: int, body: bytes) -> None:
        if op in _DATA_OPS:
            handler = self.handlers.get(req_id)
            if handler is not None:
                handler(op, body)
            return
        if op == wire.OP_IMPORT:
            name = self._decode(body)
            if not isinstance(name, str):
                raise ProtocolError('import request is not a module name', self.host)
            answer = SERVER.lookup(name)
            root = SERVER.resource_root(answer)
            if root is not None:
                self.resource_roots.add(root)
            self.send(wire.OP_IMPORT_REPLY, req_id, _codec.packb(answer))
        elif op == wire.OP_GET_DATA:
            path = self._decode(body)
            if not isinstance(path, str):
                raise ProtocolError('data request is not a path', self.host)
            data = SERVER.get_data(path, self.resource_roots)
            self.send(wire.OP_DATA_REPLY, req_id, _codec.packb(data))
        elif op == wire.OP_HELLO and self.hello is None:
            self.hello = self._decode(body)
            self.hello_event.set()
        else:
            raise ProtocolError(f'unexpected op {op}', self.host)

    def _decode(self, body: bytes) -> Any:
        try:
            return _codec.unpackb(body, max_size=MAX_FRAME)
        except _codec.CodecError as exc:
            raise ProtocolError(f'undecodable frame from agent: {exc}', self.host) from None

    def decode(self, body: bytes) -> Any:
        """Decode a frame body for a handler.

        Raises ProtocolError, which fails the whole tunnel: a handler should
        decode before it unregisters itself, so it then gets the error too.
        """
        return self._decode(body)

    def _on_stderr(self) -> None:
        try:
            data = os.read(self.stderr_fd, 65536)  # type: ignore[arg-type]
        except BlockingIOError:
            return
        except OSError:
            data = b''
        if not data:
            self._stop_stderr()
            return
        lines = (self._stderr_buf + data).split(b'\n')
        self._stderr_buf = lines.pop()
        if len(self._stderr_buf) > 65536:
            lines.append(self._stderr_buf)
            self._stderr_buf = b''
        for raw in lines:
            self._emit_stderr(raw)

    def _emit_stderr(self, raw: bytes) -> None:
        # Control characters are shown escaped: a hostile agent must not
        # drive the controller's terminal.
        line = raw.decode('utf-8', 'replace').rstrip('\r').translate(_ESCAPES)
        self.stderr_tail.append(line)
        if self.echo_stderr:
            try:
                sys.stderr.write(f'[{self.host}] {line}\n')
            except (OSError, ValueError):
                pass
        log.info('[%s] %s', self.host, line, extra={'host': self.host})

    def _stop_stderr(self) -> None:
        if self._err_reader is not None:
            self._err_reader.stop()
            self._err_reader.close()
            self._err_reader = None
            if self._stderr_buf:
                self._emit_stderr(self._stderr_buf)
                self._stderr_buf = b''
            try:
                os.close(self.stderr_fd)  # type: ignore[arg-type]
            except OSError:
                pass

    def drain_stderr(self) -> None:
        """Read whatever stderr the agent left, without waiting."""
        while self._err_reader is not None:
            before = len(self.stderr_tail)
            self._on_stderr()
            if len(self.stderr_tail) == before and self._err_reader is not None:
                break

    def _eof_reason(self) -> str:
        self.drain_stderr()
        if self.stderr_tail:
            return f'the agent closed its pipe; its stderr ended: {self.stderr_tail[-1]}'
        return 'the agent closed its pipe'

    # Ending
    def fail(self, exc: ChopsticksError) -> None:
        """Close the connection and give ``exc`` to every pending request."""
        if self.error is not None:
            return
        self.error = exc
        self._reader.stop()
        self._reader.close()
        self._writer.stop()
        self._writer.close()
        self._out.clear()
        self._drained.set()
        try:
            self.sock.close()
        except OSError:
            pass
        handlers, self.handlers = self.handlers, {}
        for handler in handlers.values():
            try:
                handler(-1, exc)
            except Exception:  # noqa: BLE001 - one handler must not stop the rest
                log.exception('error handler failed for %s', self.host)
        self.hello_event.set()
        if self.on_lost is not None:
            self.on_lost(exc)

    def close(self) -> None:
        """Close the protocol pipe: the agent sees EOF and exits.

        stderr stays open so its last lines are still shown: call
        :meth:`close_stderr` once the agent has exited.
        """
        self.fail(ConnectionLost('tunnel closed', self.host))

    def close_stderr(self) -> None:
        """Show what stderr still holds, then close it."""
        self.drain_stderr()
        self._stop_stderr()


_ESCAPES = {c: f'\\x{c:02x}' for c in [*range(0x20), *range(0x7f, 0xa0)] if c != 0x09}

_DATA_OPS = frozenset({wire.OP_RESULT, wire.OP_ERROR, wire.OP_FETCH_DATA, wire.OP_FETCH_END})
OP_LOST = -1
"""The op a handler sees when its connection fails; ``body`` is the exception."""

__all__ = ['Connection', 'Handler', 'OP_LOST']
