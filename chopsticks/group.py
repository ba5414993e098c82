"""Groups: one operation over many tunnels, in parallel, with results as data.

::

    group = Group(['web1', 'web2', Local('build')], concurrency=500)
    result = group.call(time.time, timeout=10)
    for host, t in result.successful():
        ...
    result.raise_failures()

A host that cannot connect, raises, or overruns its timeout becomes an
:class:`~chopsticks.tunnel.ErrorResult` in the :class:`GroupResult`; it
never stops the other hosts.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from typing import Any, Callable, Iterable, Iterator

from gevent.pool import Pool

from ._base import BaseTunnel
from ._fanout import Fanout
from ._results import ErrorResult
from ._serialize import dumps_call, reference_call
from .errors import GroupError

DEFAULT_CONCURRENCY = 500

__all__ = ['DEFAULT_CONCURRENCY', 'Group', 'GroupResult']


class GroupResult(dict):  # type: ignore[type-arg]
    """The outcome of a group operation: a dict of host -> value or ErrorResult."""

    def successful(self) -> Iterator[tuple[str, Any]]:
        """Iterate over ``(host, value)`` for the hosts that succeeded."""
        for host, value in self.items():
            if not isinstance(value, ErrorResult):
                yield host, value

    def failures(self) -> Iterator[tuple[str, ErrorResult]]:
        """Iterate over ``(host, ErrorResult)`` for the hosts that failed."""
        for host, value in self.items():
            if isinstance(value, ErrorResult):
                yield host, value

    @property
    def succeeded(self) -> dict[str, Any]:
        """The successful results as a dict."""
        return dict(self.successful())

    @property
    def failed(self) -> dict[str, ErrorResult]:
        """The failures as a dict."""
        return dict(self.failures())

    def summary(self, hosts_shown: int = 5) -> str:
        """A count of failures by type, then the first few hosts, one per line.

        For example::

            37/5000 hosts failed: 30 ConnectTimeout, 7 ValueError
              [web12] ConnectTimeout: no handshake within 10s
              ...

        ``hosts_shown`` bounds how many hosts are listed.
        """
        failed = self.failed
        if not failed:
            return f'all {len(self)} hosts succeeded'
        counts = Counter(err.type_name for err in failed.values())
        kinds = ', '.join(f'{n} {name}' for name, n in counts.most_common())
        first = '\n'.join(f'  [{host}] {err.msg}'
                          for host, err in list(failed.items())[:hosts_shown])
        more = len(failed) - hosts_shown
        tail = f'\n  ... and {more} more' if more > 0 else ''
        return f'{len(failed)}/{len(self)} hosts failed: {kinds}\n{first}{tail}'

    def raise_failures(self) -> None:
        """Raise :class:`~chopsticks.errors.GroupError` if any host failed."""
        failed = self.failed
        if failed:
            raise GroupError(self.summary(), failed)

    def __repr__(self) -> str:
        return f'GroupResult({dict.__repr__(self)})'


def _default_tunnel_class() -> type[BaseTunnel]:
    from . import tunnel
    return tunnel.Tunnel  # type: ignore[no-any-return]


class Group:
    """Many tunnels, driven together.

    ``hosts`` mixes host names and tunnels; a name becomes
    ``tunnel_class(host, **tunnel_options)`` (``tunnel_class`` defaults to
    :class:`~chopsticks.tunnel.Tunnel`, SSH). ``concurrency`` bounds how many
    hosts are connecting or running at once (``None``: no bound); it keeps
    a large group inside sshd's MaxStartups and the open-file limit.
    """

    def __init__(self, hosts: Iterable[str | BaseTunnel] = (),
                 concurrency: int | None = DEFAULT_CONCURRENCY, *,
                 tunnel_class: type[BaseTunnel] | None = None,
                 **tunnel_options: Any) -> None:
        if concurrency is not None and (not isinstance(concurrency, int)
                                        or isinstance(concurrency, bool)
                                        or concurrency < 1):
            raise ValueError(f'concurrency must be a positive int or None, '
                             f'not {concurrency!r}')
        if isinstance(hosts, (str, BaseTunnel)):
            raise TypeError('hosts must be an iterable of host names or tunnels')
        self.concurrency = concurrency
        cls = tunnel_class
        tunnels: dict[BaseTunnel, None] = {}
        for host in hosts:
            if isinstance(host, str):
                if cls is None:
                    cls = _default_tunnel_class()
                host = cls(host, **tunnel_options)
            elif not isinstance(host, BaseTunnel):
                raise TypeError(f'not a host name or tunnel: {host!r}')
            tunnels.setdefault(host)
        self._tunnels = list(tunnels)
        seen: dict[str, BaseTunnel] = {}
        for tunnel in self._tunnels:
            other = seen.setdefault(tunnel.host, tunnel)
            if other is not tunnel:
                raise ValueError(f'{other!r} and {tunnel!r} share the host name '
                                 f'{tunnel.host!r}: results are keyed by host name')

    @property
    def tunnels(self) -> list[BaseTunnel]:
        """The tunnels, in order of first appearance."""
        return list(self._tunnels)

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self._tunnels!r})'

    def __len__(self) -> int:
        return len(self._tunnels)

    def __iter__(self) -> Iterator[BaseTunnel]:
        return iter(list(self._tunnels))

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return any(t.host == item for t in self._tunnels)
        return item in self._tunnels

    def __enter__(self) -> Group:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Set operations: order of first appearance is kept.
    def _new(self, tunnels: Iterable[BaseTunnel]) -> Group:
        return type(self)(list(tunnels), self.concurrency)

    @staticmethod
    def _others(other: Any) -> list[BaseTunnel]:
        if isinstance(other, Group):
            return other._tunnels
        if isinstance(other, BaseTunnel):
            return [other]
        if isinstance(other, (list, tuple, set, frozenset)):
            items = list(other)
            if all(isinstance(t, BaseTunnel) for t in items):
                return items
        raise TypeError(f'cannot combine a Group with {other!r}')

    def union(self, *others: Any) -> Group:
        tunnels = list(self._tunnels)
        for other in others:
            tunnels += self._others(other)
        return self._new(tunnels)

    def intersection(self, *others: Any) -> Group:
        keep = set(self._tunnels)
        for other in others:
            keep &= set(self._others(other))
        return self._new(t for t in self._tunnels if t in keep)

    def difference(self, *others: Any) -> Group:
        drop: set[BaseTunnel] = set()
        for other in others:
            drop |= set(self._others(other))
        return self._new(t for t in self._tunnels if t not in drop)

    def symmetric_difference(self, other: Any) -> Group:
        theirs = self._others(other)
        mine = set(self._tunnels)
        ours = set(theirs)
        return self._new([t for t in self._tunnels if t not in ours]
                         + [t for t in theirs if t not in mine])

    def __or__(self, other: Any) -> Group:
        return self.union(other)

    __add__ = __or__

    def __ror__(self, other: Any) -> Group:
        return self._new(self._others(other)).union(self)

    __radd__ = __ror__

    def __and__(self, other: Any) -> Group:
        return self.intersection(other)

    def __rand__(self, other: Any) -> Group:
        return self._new(self._others(other)).intersection(self)

    def __sub__(self, other: Any) -> Group:
        return self.difference(other)

    def __rsub__(self, other: Any) -> Group:
        return self._new(self._others(other)).difference(self)

    def __xor__(self, other: Any) -> Group:
        return self.symmetric_difference(other)

    def __rxor__(self, other: Any) -> Group:
        return self._new(self._others(other)).symmetric_difference(self)

    # Operations
    def _collect(self, fanout: Fanout,
                 callback: Callable[[str, Any], None] | None = None) -> GroupResult:
        result = GroupResult()
        for host, value in fanout.run():
            result[host] = value
            if callback is not None:
                callback(host, value)
        return GroupResult((t.host, result[t.host]) for t in self._tunnels
                           if t.host in result)

    def _call_fanout(self, fn: Callable[..., Any], args: tuple[Any, ...],
                     kwargs: dict[str, Any], timeout: float | None) -> Fanout:
        payloads: dict[Any, Any] = {}
        # Serialise now (once for the whole group): a function that cannot be
        # sent is the caller's error, not a failure of every host.
        if reference_call(fn, args, kwargs) is None:
            dumps_call(fn, args, kwargs, 5)

        def start(tunnel: BaseTunnel, on_done: Callable[[bool, Any], None]) -> None:
            tunnel._send_call(tunnel._payload(fn, args, kwargs, payloads), on_done)

        return Fanout(self._tunnels, start, self.concurrency, timeout)

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None,
             **kwargs: Any) -> GroupResult:
        """Call ``fn(*args, **kwargs)`` on every host; a GroupResult keyed by host.

        ``timeout`` bounds each host's call (after it connected); an
        overrunning host gets an ErrorResult for CallTimeout and its agent is
        killed. The call is pickled once for the whole group.
        """
        return self._collect(self._call_fanout(fn, args, kwargs, timeout))

    def stream(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None,
               **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """Like :meth:`call`, but yield ``(host, value)`` as each host finishes.

        Values are results or ErrorResults. For progress bars and long runs.
        """
        return self._call_fanout(fn, args, kwargs, timeout).run()

    def call_with_callback(self, callback: Callable[[str, Any], None],
                           fn: Callable[..., Any], *args: Any,
                           timeout: float | None = None, **kwargs: Any) -> GroupResult:
        """Like :meth:`call`, and ``callback(host, value)`` as each host finishes."""
        return self._collect(self._call_fanout(fn, args, kwargs, timeout), callback)

    def connect(self) -> GroupResult:
        """Connect every tunnel; a GroupResult of None or ErrorResult per host."""
        def start(tunnel: BaseTunnel, on_done: Callable[[bool, Any], None]) -> None:
            on_done(True, None)
        return self._collect(Fanout(self._tunnels, start, self.concurrency,
                                    blocking=True))

    def close(self) -> None:
        """Close every tunnel and wait for the agents to exit (bounded)."""
        pool = Pool(self.concurrency)
        for tunnel in self._tunnels:
            pool.spawn(tunnel.close)
        pool.join()

    def put(self, local_path: str, remote_path: str | None = None, mode: int = 0o644,
            *, timeout: float | None = None) -> GroupResult:
        """Copy a local file to every host; each value is ``{'remote_path', 'sha1sum', 'size'}``.

        The file is hashed once; each host streams it with bounded memory.
        """
        sha1 = hashlib.sha1()
        with open(local_path, 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 20), b''):
                sha1.update(chunk)
        digest = sha1.hexdigest()

        def start(tunnel: BaseTunnel, on_done: Callable[[bool, Any], None]) -> None:
            tunnel._put(local_path, remote_path, mode, on_done, digest)

        return self._collect(Fanout(self._tunnels, start, self.concurrency, timeout,
                                    blocking=True))

    def fetch(self, remote_path: str, local_path: str | None = None, *,
              timeout: float | None = None) -> GroupResult:
        """Fetch ``remote_path`` from every host.

        ``local_path`` is a template filled with ``{host}``
        (``'logs/{host}-syslog'``); the paths must differ per host. Without
        it, each host's file goes to a new temporary file. Each value is
        ``{'local_path', 'remote_path', 'sha1sum', 'size'}``.
        """
        paths: dict[BaseTunnel, str | None] = {}
        if local_path is not None:
            for tunnel in self._tunnels:
                try:
                    paths[tunnel] = os.fspath(local_path).format(host=tunnel.host)
                except (KeyError, IndexError, ValueError) as exc:
                    raise ValueError(f'local_path template {local_path!r} can only use '
                                     f'{{host}} (double other braces): {exc!r}') from None
            if len(set(paths.values())) != len(paths):
                raise ValueError(f'local_path template {local_path!r} does not give '
                                 'a unique path per host; include {host}')

        def start(tunnel: BaseTunnel, on_done: Callable[[bool, Any], None]) -> None:
            tunnel._start_fetch(remote_path, paths.get(tunnel), on_done)

        return self._collect(Fanout(self._tunnels, start, self.concurrency, timeout))

    def filter(self, predicate: Callable[[], Any], exclude: bool = False) -> Group:
        """The group of hosts where the remote call ``predicate()`` is true.

        With ``exclude=True``, those where it is false. Raises GroupError if a
        host fails to connect or to evaluate the predicate.
        """
        result = self.call(predicate)
        result.raise_failures()
        keep = {host for host, value in result.items() if bool(value) != exclude}
        return self._new(t for t in self._tunnels if t.host in keep)
