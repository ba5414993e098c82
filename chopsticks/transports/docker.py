"""Agents in Docker containers through the Docker SDK: :class:`Docker`, :class:`DockerExec`.

``Docker`` starts a new container running the agent; ``DockerExec`` runs the
agent in a container that is already running. Either way the agent's stdio
is the engine's hijacked HTTP stream (attach or exec), which carries stdout
and stderr multiplexed in 8-byte-headed frames: two greenlets pump it to and
from a :class:`~chopsticks.transports._bridge.Bridge`, and closing our end
half-closes the stream, which closes the agent's stdin so it exits.

Every SDK call is blocking HTTP, so it runs off the hub
(:func:`~chopsticks.transports._bridge.offload`). The docker package is
imported on first connect: ``import chopsticks`` stays lean without it.

Engines are reached through ``unix://`` or plain ``tcp://`` (DOCKER_HOST);
the hijacked stream of ``https://`` and ``ssh://`` engines is not a plain
socket, and those are refused with a clear error. Images are never pulled:
no registry may be reachable from here, and a tunnel should not download
hundreds of megabytes behind its caller's back.
"""
from __future__ import annotations

import os
import re
import socket
import sys
import threading
from typing import Any, Callable, ClassVar

import gevent
from gevent.event import Event
from gevent.lock import Semaphore

from .._base import BaseTunnel
from ..errors import ConnectError, ConnectTimeout, DockerError, InterpreterNotFound
from ._bridge import Bridge, offload, recv_some, require, send_all
from .base import AgentPipes

DEFAULT_IMAGE = 'python:3.X'
#: Docker container names: the engine's own rule.
_NAME = re.compile(r'[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z')
_RESERVED = frozenset(('command', 'name', 'stdin_open', 'tty', 'detach', 'stdout',
                       'stderr', 'remove', 'auto_remove', 'entrypoint'))
_STDERR = 2
_MISSING = ('no such file or directory', 'executable file not found', 'not found')

_clients: dict[tuple[str | None, ...], Any] = {}
_clients_lock = threading.Lock()


def _docker() -> Any:
    try:
        import docker
    except ImportError as exc:
        raise ImportError("Docker tunnels need the docker package: "
                          "pip install 'chopsticks[docker]'") from exc
    return docker


def default_client() -> Any:
    """``docker.from_env()``, made once per DOCKER_* environment (blocking)."""
    key = tuple(os.environ.get(k) for k in ('DOCKER_HOST', 'DOCKER_TLS_VERIFY',
                                            'DOCKER_CERT_PATH'))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = _docker().from_env()
    return client


def engine_url(client: Any | None) -> str:
    """Where the engine is, for messages (the SDK hides unix socket paths)."""
    if client is None:
        return os.environ.get('DOCKER_HOST') or 'unix:///var/run/docker.sock'
    api = getattr(client, 'api', client)
    adapter = getattr(api, '_custom_adapter', None)
    path = getattr(adapter, 'socket_path', None)
    return f'unix://{path}' if path else str(getattr(api, 'base_url', '?'))


def translate(host: str, exc: BaseException, client: Any | None,
              image: str | None = None) -> ConnectError:
    """The chopsticks error for a docker SDK or requests exception."""
    docker = _docker()
    import requests.exceptions
    url = engine_url(client)
    if isinstance(exc, ConnectError):
        return exc
    if isinstance(exc, docker.errors.ImageNotFound) and image is not None:
        return DockerError(
            f'image {image!r} is not on the Docker engine at {url}, and chopsticks never '
            'pulls: get it there first (docker pull, docker load, docker build or '
            'docker import), or pass image= naming one it has', host)
    if isinstance(exc, docker.errors.APIError):
        text = str(exc.explanation or exc)
        low = text.lower()
        if exc.status_code == 404 and 'container' in low:
            return DockerError(f'no container {host!r} on the engine at {url}', host)
        if exc.status_code == 409 and 'already in use' in low:
            return DockerError(f'a container named {host!r} already exists on {url}: '
                               'remove it or choose another name', host)
        if 'is not running' in low:
            return DockerError(f'container {host!r} is not running', host)
        if any(m in low for m in _MISSING) and ('exec' in low or 'stat' in low):
            return InterpreterNotFound(f'cannot start the agent: {text}', host)
        return DockerError(f'the Docker engine at {url} refused: {text}', host)
    if isinstance(exc, requests.exceptions.Timeout):
        return DockerError(f'the Docker engine at {url} did not answer in time', host)
    if isinstance(exc, requests.exceptions.ConnectionError) or (
            isinstance(exc, docker.errors.DockerException)
            and 'fetching server API version' in str(exc)):
        return DockerError(f'no Docker engine reachable at {url}: {_reason(exc)} '
                           '(is dockerd running? is DOCKER_HOST right?)', host)
    if isinstance(exc, (docker.errors.DockerException, OSError)):
        return DockerError(f'Docker engine at {url}: {exc}', host)
    return DockerError(f'Docker engine at {url}: {type(exc).__name__}: {exc}', host)


def _reason(exc: BaseException) -> str:
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    for arg in getattr(exc, 'args', ()):
        for inner in getattr(arg, 'args', ()):
            if isinstance(inner, OSError):
                return inner.strerror or str(inner)
    if isinstance(seen, OSError) and seen.strerror:
        return seen.strerror
    return str(exc)


def _raw_socket(host: str, stream: Any, client: Any) -> socket.socket:
    """The plain socket under the SDK's hijacked stream (SocketIO for unix/tcp)."""
    import ssl
    raw = getattr(stream, '_sock', stream)
    if not isinstance(raw, socket.socket) or isinstance(raw, ssl.SSLSocket):
        raise DockerError(f'chopsticks tunnels through unix:// or tcp:// Docker engines; '
                          f'the stream from {engine_url(client)} is not a plain socket', host)
    return raw


class _Stream:
    """The agent behind one hijacked stream: pumps, and the AgentProcess contract.

    ``finish()`` (per subclass) learns the exit status and cleans up after the
    stream ended; it runs once, even if stop() is called again.
    """

    def __init__(self, host: str, client: Any, stream: Any, raw: socket.socket,
                 bridge: Bridge) -> None:
        self.host = host
        self.client = client
        self.stream = stream
        self.raw = raw
        self.bridge = bridge
        self.status: int | None = None
        self.ended = Event()
        self._stop_lock = Semaphore()
        self._finished = False
        raw.setblocking(False)
        bridge.inner.setblocking(False)
        bridge.err.setblocking(False)
        self._in = gevent.spawn(self._pump_in)
        self._out = gevent.spawn(self._pump_out)

    def _pump_in(self) -> None:
        """Our writes to the agent's stdin; our EOF closes its stdin."""
        try:
            while True:
                data = recv_some(self.bridge.inner)
                if not data:
                    break
                send_all(self.raw, data)
        except OSError:
            pass
        try:
            self.raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _pump_out(self) -> None:
        """Demultiplex the engine's frames: stdout to the tunnel, stderr to its pipe."""
        buf = bytearray()
        first = True
        try:
            while True:
                data = recv_some(self.raw)
                if not data:
                    break
                buf += data
                pos = 0
                while len(buf) - pos >= 8:
                    size = int.from_bytes(buf[pos + 4:pos + 8], 'big')
                    if len(buf) - pos - 8 < size:
                        break
                    kind = buf[pos]
                    chunk = bytes(buf[pos + 8:pos + 8 + size])
                    pos += 8 + size
                    if first and kind != _STDERR:
                        first = False
                        # The runtime reports a failed exec on stdout: show it as stderr.
                        if chunk.startswith(b'OCI runtime'):
                            kind = _STDERR
                    self._deliver(kind, chunk)
                del buf[:pos]
        except OSError:
            pass
        finally:
            self._in.kill()
            self.bridge.close_inner()
            for closing in (self.raw, self.stream):
                try:
                    closing.close()
                except (OSError, AttributeError):
                    pass
            self.ended.set()

    def _deliver(self, kind: int, chunk: bytes) -> None:
        target = self.bridge.err if kind == _STDERR else self.bridge.inner
        try:
            send_all(target, chunk)
        except OSError:
            pass  # the tunnel closed its end: drain the stream until the agent exits

    # AgentProcess
    def stop(self, grace: float) -> int | None:
        with self._stop_lock:
            if self._finished:
                return self.status
            if not self.ended.wait(grace):
                self.kill()
                self.ended.wait(5.0)
            try:
                self.status = self.finish()
            except Exception:  # noqa: BLE001 - stop never raises
                pass
            self._finished = True
            return self.status

    def kill(self) -> None:
        try:
            self.raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def finish(self) -> int | None:
        raise NotImplementedError


class _Container(_Stream):
    """A container we started: killed through the engine, removed when ``rm``."""

    def __init__(self, host: str, client: Any, stream: Any, raw: socket.socket,
                 bridge: Bridge, container_id: str, rm: bool) -> None:
        self.container_id = container_id
        self.rm = rm
        self.logs_tail = ''
        self.oom_killed = False
        super().__init__(host, client, stream, raw, bridge)

    def kill(self) -> None:
        super().kill()
        _background(self.client.api.kill, self.container_id)

    def finish(self) -> int | None:
        api = self.client.api
        status: int | None = None
        try:
            status = offload(api.wait, self.container_id, timeout=5)['StatusCode']
        except Exception:  # noqa: BLE001 - still running or gone: killed below
            _quiet(offload, api.kill, self.container_id)
        if status:
            try:
                logs = offload(api.logs, self.container_id, stdout=False, stderr=True,
                               tail=10)
                self.logs_tail = logs.decode('utf-8', 'replace').strip()
                state = offload(api.inspect_container, self.container_id)['State']
                self.oom_killed = bool(state.get('OOMKilled'))
            except Exception:  # noqa: BLE001 - only extra detail for a message
                pass
        if self.rm:
            _quiet(offload, api.remove_container, self.container_id, force=True)
        return status


class _Exec(_Stream):
    """An exec in a running container. The engine cannot kill an exec:
    kill() cuts the stream, and the agent exits at the EOF on its stdin."""

    def __init__(self, host: str, client: Any, stream: Any, raw: socket.socket,
                 bridge: Bridge, exec_id: str) -> None:
        self.exec_id = exec_id
        super().__init__(host, client, stream, raw, bridge)

    def finish(self) -> int | None:
        for _ in range(20):
            info = offload(self.client.api.exec_inspect, self.exec_id)
            if not info.get('Running'):
                code = info.get('ExitCode')
                return int(code) if code is not None else None
            gevent.sleep(0.1)
        return None


def _quiet(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 - best-effort cleanup
        pass


def _background(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run a blocking cleanup call off the hub, later, ignoring its failure."""
    gevent.spawn(_quiet, offload, fn, *args, **kwargs)


class _DockerBase(BaseTunnel):
    """What Docker and DockerExec share: the client, launch with a deadline, errors."""

    #: Looked up on the container's PATH by the runtime (no shell involved):
    #: /usr/local/bin/python3 in the official python images, /usr/bin/python3
    #: in distribution ones.
    python3: ClassVar[str] = 'python3'

    def __init__(self, name: str, *, python: str | None, client: Any | None,
                 connect_timeout: float | None) -> None:
        super().__init__(name, python=python, connect_timeout=connect_timeout)
        require('docker', 'docker', type(self).__name__)
        self.client: Any = client
        self._agent: _Stream | None = None

    def _get_client(self) -> Any:
        if self.client is None:
            self.client = default_client()
        return self.client

    def _start(self) -> AgentPipes:
        _docker()
        bridge = Bridge(self.host)
        outcome: list[Any] = []

        def launch() -> None:
            try:
                stream = offload(self._launch_blocking)
                outcome.append(stream)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                outcome.append(exc)

        worker = gevent.spawn(launch)
        worker.join(self.connect_timeout)
        if not outcome:
            def late(_: Any) -> None:
                # The launch finished after we gave up: stop and remove what it started.
                if outcome and not isinstance(outcome[0], BaseException):
                    try:
                        agent = self._wrap(outcome[0], bridge)
                    except ConnectError:
                        bridge.close_inner()
                        return
                    agent.kill()
                    gevent.spawn(agent.stop, 0)
                else:
                    bridge.close_inner()
            worker.link(late)
            bridge.close_outer()
            raise ConnectTimeout(f'the Docker engine at {engine_url(self.client)} did not '
                                 f'start the agent within {self.connect_timeout:g}s', self.host)
        result = outcome[0]
        if isinstance(result, BaseException):
            bridge.close_outer()
            bridge.close_inner()
            raise translate(self.host, result, self.client, getattr(self, 'image', None)) \
                from result
        try:
            self._agent = agent = self._wrap(result, bridge)
        except BaseException:
            bridge.close_outer()
            bridge.close_inner()
            raise
        return AgentPipes(bridge.outer, bridge.err_fd, agent)

    def _launch_blocking(self) -> Any:
        """Start the agent and return what _wrap needs (blocking: runs off the hub)."""
        raise NotImplementedError

    def _wrap(self, launched: Any, bridge: Bridge) -> _Stream:
        raise NotImplementedError

    def _diagnose(self, stderr: str, status: int | None) -> ConnectError:
        lines = stderr.strip().splitlines()
        text = ' | '.join(lines[-3:])
        if status in (126, 127) or any(m in text.lower() for m in _MISSING[:2]):
            return InterpreterNotFound(
                f'cannot run {self.interpreter!r} in the container'
                + (f': {text}' if text else ''), self.host)
        return super()._diagnose(stderr, status)


class Docker(_DockerBase):
    """An agent in a new container, started from ``image`` with the Docker SDK.

    * ``name`` is the container's name and the tunnel's host name;
    * ``image='python:3.X'`` means the controller's Python version, e.g.
      ``python:3.11``. The image must already be on the engine: chopsticks
      never pulls (:class:`~chopsticks.errors.DockerError` says so);
    * ``rm=True`` removes the container when the tunnel closes;
    * ``client``: a ``docker.DockerClient``; by default ``docker.from_env()``,
      so DOCKER_HOST is honoured;
    * ``python``: the interpreter in the image (default ``python3`` on the
      container's PATH);
    * ``create_options`` go to ``client.containers.create`` (e.g.
      ``network_mode='none'``, ``mem_limit='256m'``, ``volumes=...``).

    An image without Python, a missing interpreter or a container that exits
    early raise :class:`~chopsticks.errors.DockerError` (or
    :class:`~chopsticks.errors.InterpreterNotFound`) with the container's
    exit status and last lines of output.
    """

    def __init__(self, name: str, image: str = DEFAULT_IMAGE, rm: bool = True, *,
                 python: str | None = None, client: Any | None = None,
                 connect_timeout: float | None = None, **create_options: Any) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f'invalid container name {name!r}: use letters, digits, '
                             "'_', '.' and '-', starting with a letter or digit")
        reserved = _RESERVED & set(create_options)
        if reserved:
            raise ValueError(f'Docker sets {", ".join(sorted(reserved))} itself')
        super().__init__(name, python=python, client=client, connect_timeout=connect_timeout)
        if image == DEFAULT_IMAGE:
            image = 'python:%d.%d' % sys.version_info[:2]
        self.image = image
        self.rm = bool(rm)
        self.create_options = create_options
        self.container_id: str | None = None

    def _launch_blocking(self) -> tuple[str, Any]:
        client = self._get_client()
        api = client.api
        argv = self._agent_argv()
        if self.container_id is not None and not self.rm:
            # Reconnecting to our own kept container: start it again.
            try:
                stream = self._attach_and_start(api, self.container_id)
                return self.container_id, stream
            except _docker().errors.NotFound:
                self.container_id = None
        try:
            container = self._create(client, argv)
        except _docker().errors.APIError as exc:
            if exc.status_code != 409 or self.container_id is None:
                raise
            # Our previous container, still being removed in the background.
            api.remove_container(self.container_id, force=True)
            container = self._create(client, argv)
        self.container_id = container.id
        try:
            stream = self._attach_and_start(api, container.id)
        except BaseException:
            if self.rm:
                _quiet(api.remove_container, container.id, force=True)
            raise
        return container.id, stream

    def _create(self, client: Any, argv: list[str]) -> Any:
        return client.containers.create(self.image, command=argv, name=self.host,
                                        stdin_open=True, tty=False, **self.create_options)

    def _attach_and_start(self, api: Any, container_id: str) -> Any:
        # Attach before start: nothing the agent writes can be missed.
        stream = api.attach_socket(container_id, params={
            'stdin': 1, 'stdout': 1, 'stderr': 1, 'stream': 1})
        try:
            api.start(container_id)
        except BaseException:
            _quiet(stream.close)
            raise
        return stream

    def _wrap(self, launched: Any, bridge: Bridge) -> _Stream:
        container_id, stream = launched
        try:
            raw = _raw_socket(self.host, stream, self.client)
        except DockerError:
            _quiet(stream.close)
            _background(self.client.api.remove_container, container_id, force=True)
            raise
        return _Container(self.host, self.client, stream, raw, bridge, container_id,
                          self.rm)

    def _diagnose(self, stderr: str, status: int | None) -> ConnectError:
        error = super()._diagnose(stderr, status)
        if isinstance(error, InterpreterNotFound):
            return error
        agent = self._agent
        logs = stderr.strip() or (agent.logs_tail if isinstance(agent, _Container) else '')
        tail = ' | '.join(logs.splitlines()[-5:])
        oom = isinstance(agent, _Container) and agent.oom_killed
        return DockerError(
            f'container {self.host!r} (image {self.image}) exited with status {status} '
            'before the agent started' + (' (killed: out of memory)' if oom else '')
            + (f': {tail}' if tail else ' (no output)'), self.host)


class DockerExec(_DockerBase):
    """An agent in a container that is already running (``docker exec``).

    ``container`` (its name or id) is the tunnel's host name. The container
    is left as it is on close.
    """

    def __init__(self, container: str, *, python: str | None = None,
                 client: Any | None = None, connect_timeout: float | None = None) -> None:
        super().__init__(container, python=python, client=client,
                         connect_timeout=connect_timeout)
        self.container = container

    def _launch_blocking(self) -> tuple[str, Any]:
        api = self._get_client().api
        exec_id = api.exec_create(self.container, self._agent_argv(), stdin=True,
                                  stdout=True, stderr=True, tty=False)['Id']
        # The agent writes nothing before stage 2 arrives, so no output can be
        # left in the SDK's HTTP buffer when we take the raw socket.
        return exec_id, api.exec_start(exec_id, socket=True)

    def _wrap(self, launched: Any, bridge: Bridge) -> _Stream:
        exec_id, stream = launched
        try:
            raw = _raw_socket(self.host, stream, self.client)
        except DockerError:
            _quiet(stream.close)
            raise
        return _Exec(self.host, self.client, stream, raw, bridge, exec_id)

    def _diagnose(self, stderr: str, status: int | None) -> ConnectError:
        error = super()._diagnose(stderr, status)
        if isinstance(error, InterpreterNotFound):
            return error
        tail = ' | '.join(stderr.strip().splitlines()[-5:])
        return DockerError(f'the agent in container {self.host!r} exited with status '
                           f'{status} before it started' + (f': {tail}' if tail else ''),
                           self.host)


__all__ = ['Docker', 'DockerExec']
