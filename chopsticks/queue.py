"""Queues: many operations on many hosts, each host in order, all hosts in parallel.

::

    queue = Queue()
    queue.put(group, 'app.tar.gz', '/tmp/app.tar.gz')
    res = queue.call(group, unpack, '/tmp/app.tar.gz')
    res.with_callback(lambda result: print(result))
    queue.run()

Each host runs its own operations in the order they were queued; a fast host
never waits for a slow one. Callbacks may queue more work: ``run()`` returns
when every queue is empty.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable

import gevent
from gevent.pool import Pool

from ._base import BaseTunnel
from ._results import ErrorResult
from .group import DEFAULT_CONCURRENCY, Group, GroupResult

_UNSET = object()

__all__ = ['AsyncResult', 'Queue']


class AsyncResult:
    """The future value of a queued operation (set while ``Queue.run()`` runs)."""

    def __init__(self) -> None:
        self._value: Any = _UNSET
        self._callbacks: list[Callable[[Any], None]] = []

    @property
    def ready(self) -> bool:
        return self._value is not _UNSET

    @property
    def value(self) -> Any:
        """The result (an ErrorResult for a failure); raises before it is set."""
        if self._value is _UNSET:
            raise ValueError('the operation has not run yet: call Queue.run()')
        return self._value

    def with_callback(self, callback: Callable[[Any], None]) -> AsyncResult:
        """Call ``callback(value)`` when the value is set (now, if it is); return self."""
        if self._value is not _UNSET:
            callback(self._value)
        else:
            self._callbacks.append(callback)
        return self

    def _set(self, value: Any) -> None:
        self._value = value
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(value)

    def __repr__(self) -> str:
        state = 'pending' if self._value is _UNSET else repr(self._value)
        return f'<AsyncResult {state}>'


Op = Callable[[BaseTunnel], Any]


class Queue:
    """Operations queued per host, run by :meth:`run`."""

    def __init__(self, concurrency: int | None = DEFAULT_CONCURRENCY) -> None:
        self.concurrency = concurrency
        self._queues: dict[BaseTunnel, deque[tuple[Op, AsyncResult]]] = {}
        self._running: set[BaseTunnel] = set()
        self._pool: Pool | None = None

    def _enqueue(self, target: BaseTunnel | Group, op: Op) -> AsyncResult:
        if isinstance(target, Group):
            return self._enqueue_group(target, op)
        if not isinstance(target, BaseTunnel):
            raise TypeError(f'expected a tunnel or a Group, not {target!r}')
        result = AsyncResult()
        self._queues.setdefault(target, deque()).append((op, result))
        if (self._pool is not None and target not in self._running
                and not self._pool.full()):
            self._start(target)
        return result

    def _enqueue_group(self, group: Group, op: Op) -> AsyncResult:
        result = AsyncResult()
        tunnels = group.tunnels
        values: dict[str, Any] = {}

        def collect(host: str) -> Callable[[Any], None]:
            def store(value: Any) -> None:
                values[host] = value
                if len(values) == len(tunnels):
                    result._set(GroupResult((t.host, values[t.host]) for t in tunnels))
            return store

        if not tunnels:
            result._set(GroupResult())
        for tunnel in tunnels:
            self._enqueue(tunnel, op).with_callback(collect(tunnel.host))
        return result

    def connect(self, target: BaseTunnel | Group) -> AsyncResult:
        """Queue a connect; the value is None (or an ErrorResult)."""
        return self._enqueue(target, lambda t: t.connect())

    def call(self, target: BaseTunnel | Group, fn: Callable[..., Any], *args: Any,
             timeout: float | None = None, **kwargs: Any) -> AsyncResult:
        """Queue ``fn(*args, **kwargs)``; for a Group the value is a GroupResult."""
        return self._enqueue(target, lambda t: t.call(fn, *args, timeout=timeout, **kwargs))

    def put(self, target: BaseTunnel | Group, local_path: str,
            remote_path: str | None = None, mode: int = 0o644) -> AsyncResult:
        """Queue a put; the value is ``{'remote_path', 'sha1sum', 'size'}``."""
        return self._enqueue(target, lambda t: t.put(local_path, remote_path, mode))

    def fetch(self, target: BaseTunnel | Group, remote_path: str,
              local_path: str | None = None) -> AsyncResult:
        """Queue a fetch; ``local_path`` may be a ``{host}`` template for a Group."""
        if isinstance(target, Group) and local_path is not None:
            paths = {t.host: local_path.format(host=t.host) for t in target.tunnels}
            if len(set(paths.values())) != len(paths):
                raise ValueError(f'local_path template {local_path!r} does not give '
                                 'a unique path per host; include {host}')
            return self._enqueue(target, lambda t: t.fetch(remote_path, paths[t.host]))
        return self._enqueue(target, lambda t: t.fetch(remote_path, local_path))

    def _start(self, tunnel: BaseTunnel) -> None:
        assert self._pool is not None
        self._running.add(tunnel)
        self._pool.spawn(self._drain, tunnel)

    def _drain(self, tunnel: BaseTunnel | None) -> None:
        """Run ``tunnel``'s queue, then any other idle host's (the pool may be full)."""
        while tunnel is not None:
            queue = self._queues[tunnel]
            try:
                while queue:
                    op, result = queue.popleft()
                    try:
                        value = op(tunnel)
                    except gevent.GreenletExit:
                        raise
                    except Exception as exc:  # noqa: BLE001 - this host's value
                        value = ErrorResult.from_exception(exc)
                    result._set(value)
            finally:
                self._running.discard(tunnel)
            tunnel = self._next_idle()

    def _next_idle(self) -> BaseTunnel | None:
        for tunnel, queue in self._queues.items():
            if queue and tunnel not in self._running:
                self._running.add(tunnel)
                return tunnel
        return None

    def run(self) -> None:
        """Run everything queued (and everything callbacks queue) to completion."""
        self._pool = Pool(self.concurrency)
        try:
            for tunnel, queue in list(self._queues.items()):
                if queue and tunnel not in self._running:
                    self._start(tunnel)
            while self._running:
                self._pool.join()
                for tunnel, queue in list(self._queues.items()):
                    if queue and tunnel not in self._running:
                        self._start(tunnel)
        finally:
            self._pool = None
            self._queues = {t: q for t, q in self._queues.items() if q}
