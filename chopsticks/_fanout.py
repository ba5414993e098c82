"""Running one operation on many tunnels: bounded, with deadlines, collected in batches.

A :class:`Fanout` keeps at most ``concurrency`` hosts busy (connecting or
running). Starting an operation on a connected tunnel never blocks: the call
frame is written and a handler is left with the tunnel's connection. Results
arrive in gevent's hub and are appended to one list; the waiting greenlet
wakes once per batch, however many hosts finished in between. Tunnels that
need connecting get a greenlet each, which the bound keeps few.

Per-host call timeouts share one timer: hosts start in order with the same
timeout, so their deadlines are already sorted.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Iterable, Iterator

import gevent
from gevent.event import Event

from ._base import BaseTunnel
from ._results import ErrorResult
from .errors import CallTimeout, ChopsticksError

#: ``start(tunnel, on_done)``: begin the operation on a connected tunnel.
Starter = Callable[[BaseTunnel, Callable[[bool, Any], None]], None]


class Fanout:
    """One operation over many tunnels."""

    def __init__(self, tunnels: Iterable[BaseTunnel], start: Starter,
                 concurrency: int | None, timeout: float | None = None,
                 blocking: bool = False) -> None:
        self.todo = deque(tunnels)
        self.total = len(self.todo)
        self.start_op = start
        self.limit = concurrency or max(self.total, 1)
        self.timeout = timeout
        # A blocking start (put streams a file) runs in a greenlet of its own.
        self.blocking = blocking
        self.in_flight = 0
        self.finished: set[BaseTunnel] = set()
        self.batch: list[tuple[str, Any]] = []
        self.done_count = 0
        self.wakeup = Event()
        self.deadlines: deque[tuple[float, BaseTunnel]] = deque()
        self.timer: Any = None
        self._filling = False

    # Driving
    def run(self) -> Iterator[tuple[str, Any]]:
        """Yield ``(host, value_or_ErrorResult)`` as results arrive."""
        self._fill()
        try:
            while self.done_count < self.total or self.batch:
                if not self.batch:
                    self.wakeup.wait()
                    self.wakeup.clear()
                batch, self.batch = self.batch, []
                yield from batch
        finally:
            # Also when the consumer stops early: start no more hosts.
            self.todo.clear()
            self._stop_timer()

    def _fill(self) -> None:
        if self._filling:
            return
        self._filling = True
        try:
            while self.in_flight < self.limit and self.todo:
                tunnel = self.todo.popleft()
                self.in_flight += 1
                if tunnel.connected and not self.blocking:
                    self._begin(tunnel)
                else:
                    gevent.spawn(self._connect_and_begin, tunnel)
        finally:
            self._filling = False

    def _connect_and_begin(self, tunnel: BaseTunnel) -> None:
        try:
            tunnel.connect()
        except ChopsticksError as exc:
            self._done(tunnel, False, exc)
            return
        except Exception as exc:  # noqa: BLE001 - one host never breaks the others
            self._done(tunnel, False, exc)
            return
        self._begin(tunnel)

    def _begin(self, tunnel: BaseTunnel) -> None:
        if self.timeout is not None:
            self._arm(tunnel)
        try:
            self.start_op(tunnel, lambda ok, value: self._done(tunnel, ok, value))
        except Exception as exc:  # noqa: BLE001 - recorded as this host's failure
            self._done(tunnel, False, exc)

    def _done(self, tunnel: BaseTunnel, ok: bool, value: Any) -> None:
        """Record one host's outcome (in the hub or a connect greenlet); once only."""
        if tunnel in self.finished:
            return
        self.finished.add(tunnel)
        if not ok:
            value = ErrorResult.from_exception(value)
        self.batch.append((tunnel.host, value))
        self.done_count += 1
        self.in_flight -= 1
        self.wakeup.set()
        self._fill()

    # Deadlines
    def _arm(self, tunnel: BaseTunnel) -> None:
        assert self.timeout is not None
        self.deadlines.append((time.monotonic() + self.timeout, tunnel))
        if self.timer is None:
            self._schedule(self.timeout)

    def _schedule(self, delay: float) -> None:
        loop = gevent.get_hub().loop
        self.timer = loop.timer(max(delay, 0.0))
        self.timer.start(self._expire)

    def _expire(self) -> None:
        self._stop_timer()
        now = time.monotonic()
        while self.deadlines and self.deadlines[0][0] <= now:
            _, tunnel = self.deadlines.popleft()
            if tunnel not in self.finished:
                self._done(tunnel, False, CallTimeout(
                    f'did not finish within {self.timeout:g}s; agent stopped', tunnel.host))
                tunnel._kill_for_timeout()
        if self.deadlines:
            self._schedule(self.deadlines[0][0] - now)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.stop()
            self.timer.close()
            self.timer = None
