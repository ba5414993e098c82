"""SSH in-process through paramiko: :class:`ParamikoTunnel`.

No ``ssh`` process per host: the SSH connection lives in this process, its
channel runs ``python -c <stage 1>`` on the remote, and a bridge
(:mod:`~chopsticks.transports._bridge`) pumps the channel to and from the
socket the multiplexer watches.

Threads. paramiko is threaded by design: each connection has its
``Transport`` thread. A tunnel adds one more, which connects (TCP, key
exchange, host key, authentication, exec) and then pumps the channel, so
paramiko's blocking handshake never runs in gevent's hub. In a program that
called ``gevent.monkey.patch_all()`` these threads are greenlets and all of
it is cooperative; unpatched they are OS threads: **a ParamikoTunnel costs
two OS threads**, and its crypto and SSH packet framing run in Python on the
controller's CPU.

Which SSH transport for thousands of hosts? :class:`~chopsticks.tunnel.SSHTunnel`
(the OpenSSH client). Measured with ``bench/transports.py`` on this 2-core
machine (loopback sshds, curve25519, Group concurrency 100, a loaded machine,
so roughly):

* connect CPU: ParamikoTunnel ~6 ms per host, all of it in the controller
  under the GIL, i.e. on one core (asyncssh is ~3.5 ms); SSHTunnel ~1 ms in
  the controller plus ~13 ms in its ssh process, which runs on any core;
* warm rounds: 200 hosts 78 ms with ParamikoTunnel against 32 ms with
  SSHTunnel (500 hosts, loaded: 230 against 115 ms), and the gap grows with
  the fleet: every frame is encrypted and framed in Python on that one core;
* per tunnel: two OS threads (1000 for 500 hosts) and ~100 KiB of the
  controller's memory, against no thread and a few KiB (plus the ssh
  process, outside the controller).

A cold fan-out is about as fast either way here (200 hosts: 4.0 s against
4.8 s; a single first call 40 ms against 65 ms), since on two cores shared
with the sshds the ssh processes' CPU weighs as much as paramiko's one core. ParamikoTunnel suits tens to a few hundred hosts,
machines without an ``ssh`` client, or programs built on paramiko; for
thousands, use SSHTunnel.

Options. ``ssh_options`` takes OpenSSH option names, as SSHTunnel does (a
mapping, or ``'Key=Value'`` strings), so one dict serves both transports:

* applied: HostName, Port, User, IdentityFile, IdentitiesOnly,
  UserKnownHostsFile, GlobalKnownHostsFile, HostKeyAlias, HashKnownHosts,
  KexAlgorithms, HostKeyAlgorithms, Ciphers, MACs, PubkeyAcceptedAlgorithms,
  ConnectTimeout (the TCP connect, never longer than ``connect_timeout``),
  Compression, ServerAliveInterval, TCPKeepAlive, AddressFamily.
  Algorithm lists take OpenSSH's ``+``/``-``/``^`` forms; names paramiko does
  not implement are skipped (``curve25519-sha256`` is taken as its twin
  ``curve25519-sha256@libssh.org``), and a list left empty is an error;
* checked, as for SSHTunnel: BatchMode may only be ``yes`` and
  StrictHostKeyChecking may only repeat ``host_key_policy``;
* accepted and ignored, meaningless in-process or always so here (never
  interactive, keys only): PasswordAuthentication, KbdInteractiveAuthentication,
  ChallengeResponseAuthentication, PreferredAuthentications, ControlMaster,
  ControlPath, ControlPersist, LogLevel, CheckHostIP, UpdateHostKeys,
  ServerAliveCountMax, VisualHostKey, ForwardAgent, ForwardX11, RequestTTY,
  ConnectionAttempts;
* anything else is a ``ValueError`` when the tunnel is made, ProxyJump and
  ProxyCommand included (use SSHTunnel for proxies).

Precedence: keywords, then ``ssh_options``, then ``~/.ssh/config``
(:attr:`ParamikoTunnel.config_file`), whose applied options are used and
other options ignored, except that a ProxyJump or ProxyCommand for the host
fails the connect rather than silently going around the proxy.
"""
from __future__ import annotations

import base64
import errno
import getpass
import hashlib
import logging
import os
import socket
import threading
from typing import Any, ClassVar

import gevent
from gevent.event import Event

from .._base import BaseTunnel
from ..errors import AuthenticationError, ConnectError, ConnectionRefused, ConnectTimeout, \
    HostKeyError, InterpreterNotFound, NameResolutionError, SudoPasswordRequired
from ._bridge import READ_SIZE, Bridge, require
from ._paramiko_settings import PARAMETER_KEYS, PROXIES, RSA_TYPES, APPLIED, KnownHosts, \
    Settings, SSHOptions, apply_options, lib, normalise_options, ssh_config_for
from .base import AgentPipes
from .ssh import check_arguments, remote_command

LOG_CHANNEL = 'chopsticks.paramiko'
#: Seconds between the idle wake-ups of paramiko's thread once connected.
IDLE_WAKEUP = 2.0
# paramiko logs connection failures at ERROR from its own thread; here they
# become exceptions, so they reach logging only where it is configured (the
# NullHandler keeps Python's last-resort handler from printing them).
logging.getLogger(LOG_CHANNEL).addHandler(logging.NullHandler())


class _UnknownHostKey(Exception):
    pass


class _ChangedHostKey(Exception):
    pass


class _HostKeyCheck:
    """paramiko's missing-host-key hook, doing all host-key checking.

    The SSHClient is given no host keys of its own, so paramiko calls this
    for every server; checking here against the shared :class:`KnownHosts`
    avoids parsing known_hosts once per connection.
    """

    def __init__(self, session: _Session) -> None:
        self.session = session

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        s = self.session.settings
        name = s.known_hosts_name
        keytype, blob = key.get_name(), key.get_base64()
        files = [KnownHosts.get(p) for p in s.known_hosts + s.global_known_hosts]
        if any(f.is_revoked(keytype, blob) for f in files):
            raise _ChangedHostKey(f'the {keytype} host key of {name} is marked @revoked')
        known = [entry for f in files for entry in f.lookup(name)]
        if known:
            if (keytype, blob) in known:
                self.session.stage = 'authentication'
                return
            types = ', '.join(sorted({t for t, _ in known}))
            raise _ChangedHostKey(
                f'the host key of {name} CHANGED: the server sent {keytype} '
                f'{_fingerprint(key)}, known_hosts has a different {types} key - '
                f'possibly a man-in-the-middle attack. If the change is legitimate, '
                f'remove the old entry from {s.known_hosts[0] if s.known_hosts else "known_hosts"}')
        if s.policy == 'accept-new' and s.known_hosts:
            files[0].add(name, keytype, blob, hashed=s.hash_known_hosts)
            self.session.stage = 'authentication'
            return
        raise _UnknownHostKey(
            f'unknown host key for {name} ({keytype} {_fingerprint(key)}); not in '
            f'{", ".join(s.known_hosts + s.global_known_hosts) or "any known_hosts file"}. '
            "Add it there, or use host_key_policy='accept-new'")


def _fingerprint(key: Any) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return 'SHA256:' + base64.b64encode(digest).decode().rstrip('=')


# The session: connect and pump in one thread
class _Killed(Exception):
    pass


class _ThreadEvent:
    """Set from any thread; waited on by greenlets of the hub that made it."""

    def __init__(self) -> None:
        self._loop = gevent.get_hub().loop
        self._event = Event()
        self.flag = False

    def set(self) -> None:
        if self.flag:
            return
        self.flag = True
        try:
            self._loop.run_callback_threadsafe(self._event.set)
        except Exception:  # noqa: BLE001 - the hub is gone: nobody waits any more
            pass

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(timeout)


class _Session:
    """One SSH connection running the agent; the tunnel's AgentProcess.

    Its thread connects, then pumps until the remote command ends or the
    tunnel gives up; ``connected`` and ``done`` wake the tunnel's greenlets.
    """

    def __init__(self, settings: Settings, command: str, bridge: Bridge,
                 timeout: float) -> None:
        self.settings = settings
        self.command = command
        self.bridge = bridge
        self.timeout = timeout
        self.connected = _ThreadEvent()
        self.done = _ThreadEvent()
        self.error: BaseException | None = None
        self.status: int | None = None
        self.stage = 'starting'
        self._killed = False
        self._sock: socket.socket | None = None
        self._client: Any = None
        self._chan: Any = None
        self.keys_tried: list[str] = []

    def start(self) -> None:
        thread = threading.Thread(target=self._run, daemon=True,
                                  name=f'chopsticks-paramiko[{self.settings.host}]')
        thread.start()

    # AgentProcess
    def stop(self, grace: float) -> int | None:
        if not self.done.wait(grace):
            self.kill()
            self.done.wait(5.0)
        return self.status

    def kill(self) -> None:
        self._killed = True
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # The thread
    def _run(self) -> None:
        try:
            try:
                chan = self._open()
            except BaseException as exc:  # noqa: BLE001 - handed to the tunnel
                self.error = exc
                return
            finally:
                self.connected.set()
            self._pump(chan)
        except Exception:  # noqa: BLE001 - the pump ends; the tunnel sees EOF
            logging.getLogger(LOG_CHANNEL).debug('pump failed', exc_info=True)
        finally:
            self._cleanup()

    def _open(self) -> Any:
        paramiko = lib()
        s = self.settings
        self.stage = 'TCP connect'
        self._sock = sock = self._tcp_connect()
        if self._killed:
            raise _Killed()
        client = self._client = paramiko.SSHClient()
        client.set_log_channel(LOG_CHANNEL)
        client.set_missing_host_key_policy(_HostKeyCheck(self))
        self.stage = 'SSH banner and key exchange'
        # paramiko's own timeouts are a backstop: the tunnel's deadline comes first.
        limit = self.timeout + 5.0
        disabled = {}
        if s.pubkeys is not None:
            disabled['pubkeys'] = [k for k in paramiko.Transport._preferred_pubkeys
                                   if k not in s.pubkeys]
        keys = [os.path.expanduser(p) for p in s.identity_files]
        self.keys_tried = keys
        client.connect(
            s.hostname, port=s.port, username=s.user, key_filename=keys or None,
            timeout=limit, allow_agent=not s.identities_only,
            look_for_keys=not s.identities_only, compress=s.compression, sock=sock,
            banner_timeout=limit, auth_timeout=limit, channel_timeout=limit,
            disabled_algorithms=disabled or None, transport_factory=self._transport)
        if self._killed:
            raise _Killed()
        transport = client.get_transport()
        # paramiko's thread wakes at every socket timeout (0.1 s) to look for a
        # close: 200 idle tunnels took 13% of a core. Closing shuts the socket
        # down instead (see _cleanup), which wakes it at once.
        transport.sock.settimeout(IDLE_WAKEUP)
        if s.keepalive:
            transport.set_keepalive(s.keepalive)
        self.stage = 'opening the session'
        chan = self._chan = transport.open_session(timeout=limit)
        chan.exec_command(self.command)
        return chan

    def _tcp_connect(self) -> socket.socket:
        s = self.settings
        timeout = min(s.tcp_timeout or self.timeout, self.timeout)
        infos = socket.getaddrinfo(s.hostname, s.port, s.family, socket.SOCK_STREAM)
        last: OSError | None = None
        for family, kind, proto, _, addr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(timeout)
                sock.connect(addr)
            except OSError as exc:
                sock.close()
                last = exc
                if isinstance(exc, ConnectionRefusedError) or \
                        exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                    continue
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if s.tcp_keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            return sock
        raise last or OSError(errno.EHOSTUNREACH, 'no address')

    def _transport(self, sock: socket.socket, **kwargs: Any) -> Any:
        """Make the Transport with our algorithm preferences (SSHClient calls this)."""
        paramiko = lib()
        transport = paramiko.Transport(sock, **kwargs)
        s = self.settings
        options = transport.get_security_options()
        if s.kex is not None:
            options.kex = s.kex
        if s.ciphers is not None:
            options.ciphers = s.ciphers
        if s.macs is not None:
            options.digests = s.macs
        key_types = list(s.key_types or options.key_types)
        # Ask for the key type known_hosts has, as OpenSSH does.
        known: list[str] = []
        for path in s.known_hosts + s.global_known_hosts:
            for keytype, _ in KnownHosts.get(path).lookup(s.known_hosts_name):
                known += RSA_TYPES if keytype == 'ssh-rsa' else [keytype]
        first = [k for k in key_types if k in known]
        options.key_types = tuple(first + [k for k in key_types if k not in first])
        return transport

    def _pump(self, chan: Any) -> None:
        """Copy channel stdout/stderr to the bridge and the bridge to channel stdin.

        The channel's event fd wakes us for remote data; a full SSH window has
        no fd, so while data waits for one the poll wakes every 20 ms.
        """
        import select
        inner, err = self.bridge.inner, self.bridge.err
        chan_fd = chan.fileno()
        inner_fd = inner.fileno()
        poller = select.poll()
        poller.register(chan_fd, select.POLLIN)
        poller.register(inner_fd, select.POLLIN)
        reading_inner = True
        inner_open = True
        local_gone = False
        pending = b''
        self.stage = 'running'
        while not self._killed:
            # No idle wake-ups: a kill shuts the socket down, which closes the
            # channel, which wakes the poll; the timeout is only a backstop.
            events = poller.poll(20 if pending else 30000)
            while chan.recv_stderr_ready():
                data = chan.recv_stderr(READ_SIZE)
                if not data:
                    break
                if not local_gone:
                    try:
                        err.sendall(data)
                    except OSError:
                        local_gone = True
            while chan.recv_ready():
                data = chan.recv(READ_SIZE)
                if not data:
                    break
                if not local_gone:
                    try:
                        inner.sendall(data)
                    except OSError:
                        local_gone = True
            if (chan.eof_received or chan.closed) and not chan.recv_ready() \
                    and not chan.recv_stderr_ready():
                break
            if reading_inner and any(fd == inner_fd for fd, _ in events):
                try:
                    data = inner.recv(READ_SIZE)
                except OSError:
                    data = b''
                if data:
                    pending = data
                else:
                    inner_open = reading_inner = False
                    poller.unregister(inner_fd)
                    chan.shutdown_write()
            while pending and chan.send_ready():
                sent = chan.send(pending)
                pending = pending[sent:]
            if inner_open:
                # Read the bridge only while the SSH window takes what we have.
                want = not pending
                if want != reading_inner:
                    if want:
                        poller.register(inner_fd, select.POLLIN)
                    else:
                        poller.unregister(inner_fd)
                    reading_inner = want
        # EOF first, so the tunnel hears of the end now; then the exit status.
        self.bridge.close_inner()
        if not self._killed:
            chan.status_event.wait(2.0)
        if chan.status_event.is_set() and chan.exit_status >= 0:
            self.status = chan.exit_status

    def _cleanup(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes paramiko's thread now
            except OSError:
                pass
        for name in ('_chan', '_client'):
            obj = getattr(self, name)
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # noqa: BLE001 - closing a dead connection
                    pass
        if self._sock is not None:
            # SSHClient.close leaves the socket open when the handshake failed.
            self._sock.close()
        self.bridge.close_inner()
        self.done.set()


# The tunnel
class ParamikoTunnel(BaseTunnel):
    """An agent on ``host`` over SSH through paramiko, in this process.

    Same parameters as :class:`~chopsticks.tunnel.SSHTunnel`:

    * ``host``: a name, address or ``~/.ssh/config`` alias, optionally
      ``user@host``; the tunnel's identity (results are keyed by it);
    * ``user``, ``port``: default from ``ssh_options``, then ``~/.ssh/config``,
      then the local user name and 22;
    * ``sudo=True`` runs the agent as root through ``sudo -n`` (never prompts:
      :class:`~chopsticks.errors.SudoPasswordRequired` where it would);
    * ``python``: the remote interpreter (default ``/usr/bin/python3``);
    * ``identity_file``: the private key to log in with, and then the only
      one offered; without it ssh-agent's keys and ``~/.ssh/id_*`` are tried;
    * ``known_hosts``: the file to check host keys against, where
      ``accept-new`` records them (default ``~/.ssh/known_hosts``, plus the
      global files); ``host_key_policy='strict'`` refuses an unknown or changed
      key with :class:`~chopsticks.errors.HostKeyError`, ``'accept-new'``
      records a new host's key and still refuses a changed one;
    * ``connect_timeout``: seconds for TCP, key exchange, login and session;
      a server that accepts and says nothing fails with
      :class:`~chopsticks.errors.ConnectTimeout` after this long. The agent's
      own handshake then gets as long again;
    * ``ssh_options``: OpenSSH option names, see the module docstring.

    Works with or without ``gevent.monkey.patch_all()``. For thousands of
    hosts use SSHTunnel: unpatched, each ParamikoTunnel costs two OS threads,
    and all the SSH crypto runs on the controller's CPU.
    """

    #: The ssh_config file read for host settings (None: none).
    config_file: ClassVar[str | None] = '~/.ssh/config'

    def __init__(self, host: str, user: str | None = None, port: int | None = None,
                 sudo: bool = False, *, python: str | None = None,
                 identity_file: str | os.PathLike[str] | None = None,
                 known_hosts: str | os.PathLike[str] | None = None,
                 host_key_policy: str = 'strict', connect_timeout: float = 10.0,
                 ssh_options: SSHOptions = None) -> None:
        super().__init__(host, python=python, connect_timeout=connect_timeout)
        name, host_user = check_arguments(host, user, port, host_key_policy,
                                          self.connect_timeout)
        user = host_user or user
        require('paramiko', 'ssh', 'ParamikoTunnel')
        self.hostname = name
        self.user = user
        self.port = port
        self.sudo = bool(sudo)
        self.identity_file = _path(identity_file)
        self.known_hosts = _path(known_hosts)
        self.host_key_policy = host_key_policy
        options = normalise_options(ssh_options)
        # A keyword given explicitly wins over the same key in ssh_options.
        self.ssh_options = {k: v for k, v in options.items()
                            if k not in PARAMETER_KEYS or getattr(self, PARAMETER_KEYS[k]) is None}
        # Reject bad values and algorithm lists now, not at connect time.
        apply_options(Settings(host, name), self.ssh_options, 'ssh_options',
                      policy=host_key_policy)

    def remote_command(self) -> str:
        """The agent's argv quoted for the remote login shell (as SSHTunnel's)."""
        return remote_command(self._agent_argv(), self.sudo)

    def settings(self) -> Settings:
        """Resolve keywords > ssh_options > ssh_config > defaults, for one connect."""
        s = Settings(host=self.host, hostname=self.hostname, user=getpass.getuser(),
                     known_hosts=['~/.ssh/known_hosts'],
                     global_known_hosts=['/etc/ssh/ssh_known_hosts',
                                         '/etc/ssh/ssh_known_hosts2'])
        if self.config_file:
            config = ssh_config_for(self.config_file, self.hostname)
            for proxy, option in PROXIES.items():
                if str(config.get(proxy, 'none')).lower() != 'none':
                    raise ConnectError(f'{self.config_file} sets {option} for this host: '
                                       'ParamikoTunnel cannot follow it; use SSHTunnel',
                                       self.host)
            config = {k: v for k, v in config.items() if k in APPLIED
                      and k not in self.ssh_options}
            s = apply_options(s, config, self.config_file)
        s = apply_options(s, self.ssh_options, 'ssh_options', policy=self.host_key_policy)
        if self.user is not None:
            s.user = self.user
        if self.port is not None:
            s.port = self.port
        if self.identity_file is not None:
            # As with SSHTunnel (ssh -i, IdentitiesOnly=yes): only this key.
            s.identity_files = [self.identity_file]
            s.identities_only = True
        if self.known_hosts is not None:
            s.known_hosts = [self.known_hosts]
        s.policy = self.host_key_policy
        s.known_hosts = [os.path.expanduser(p) for p in s.known_hosts]
        return s

    def _start(self) -> AgentPipes:
        lib()
        try:
            settings = self.settings()
        except ValueError as exc:
            raise ConnectError(str(exc), self.host) from exc
        bridge = Bridge(self.host)
        session = _Session(settings, self.remote_command(), bridge, self.connect_timeout)
        try:
            session.start()
        except RuntimeError as exc:  # can't start new thread
            bridge.close_outer()
            bridge.close_inner()
            raise ConnectError(f'cannot start a thread: {exc}', self.host) from exc
        # ``flag``: a session ready just as the deadline passed is not thrown away.
        if not session.connected.wait(self.connect_timeout) and not session.connected.flag:
            session.kill()
            bridge.close_outer()
            raise ConnectTimeout(f'no SSH session within {self.connect_timeout:g}s '
                                 f'(stuck in: {session.stage})', self.host)
        if session.error is not None:
            bridge.close_outer()
            error = session.error
            raise self._translate(settings, session, error) from error
        return AgentPipes(bridge.outer, bridge.err_fd, session)

    def _translate(self, s: Settings, session: _Session, exc: BaseException) -> ConnectError:
        """The chopsticks error for what the session thread raised."""
        paramiko = lib()
        where = f'{s.hostname} port {s.port}'
        if isinstance(exc, _UnknownHostKey):
            return HostKeyError(str(exc), self.host)
        if isinstance(exc, _ChangedHostKey):
            return HostKeyError(str(exc), self.host)
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyError(f'the host key of {s.known_hosts_name} does not match: {exc}',
                                self.host)
        if isinstance(exc, paramiko.BadAuthenticationType):
            return AuthenticationError(
                f'{s.user}@{where} allows only {", ".join(exc.allowed_types)} '
                '(chopsticks uses keys only)', self.host)
        if isinstance(exc, paramiko.AuthenticationException):
            keys = ', '.join(session.keys_tried) or 'ssh-agent and ~/.ssh/id_* keys'
            return AuthenticationError(f'{s.user}@{where} refused our keys ({keys}): {exc}',
                                       self.host)
        if isinstance(exc, paramiko.SSHException):
            text = str(exc)
            if 'No authentication methods available' in text or 'No existing session' in text:
                return AuthenticationError(
                    f'no key to log in to {s.user}@{where} with: give identity_file= '
                    'or load a key into ssh-agent', self.host)
            if 'banner' in text:
                cause = exc.__cause__ or exc.__context__
                if isinstance(cause, (socket.timeout, TimeoutError)):
                    return ConnectTimeout(f'no SSH banner from {where}', self.host)
                return ConnectError(f'{where} closed the connection before its SSH banner '
                                    '(not an SSH server, or it refused us)', self.host)
            if 'Incompatible' in text or 'no acceptable' in text.lower():
                return ConnectError(f'no algorithm in common with {where}: {text}', self.host)
            if isinstance(exc, paramiko.ChannelException):
                return ConnectError(f'{where} refused a session: {text}', self.host)
            return ConnectError(f'SSH to {where} failed ({session.stage}): {text}', self.host)
        if isinstance(exc, ConnectionRefusedError):
            return ConnectionRefused(f'connection refused by {where}', self.host)
        if isinstance(exc, socket.gaierror):
            return NameResolutionError(f'cannot resolve {s.hostname!r}: {exc.strerror}',
                                       self.host)
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return ConnectTimeout(f'{session.stage} to {where} timed out', self.host)
        if isinstance(exc, (OSError, EOFError)):
            return ConnectError(f'connection to {where} failed ({session.stage}): '
                                f'{exc or type(exc).__name__}', self.host)
        return ConnectError(f'SSH to {where} failed ({session.stage}): '
                            f'{type(exc).__name__}: {exc}', self.host)

    def _diagnose(self, stderr: str, status: int | None) -> ConnectError:
        lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
        python = next((line for line in lines if self.interpreter in line), None)
        if python is not None and ('not found' in python or 'No such file' in python):
            return InterpreterNotFound(f'remote python {self.interpreter!r} not found: {python}',
                                       self.host)
        if self.sudo:
            if 'password is required' in stderr or 'a terminal is required' in stderr:
                return SudoPasswordRequired('sudo -n on the remote would ask for a password',
                                            self.host)
            if status == 127 and any('sudo' in line for line in lines):
                return ConnectError('sudo is not installed on the remote', self.host)
        if status == 127:
            return InterpreterNotFound(f'remote python {self.interpreter!r} not found'
                                       + (f': {lines[-1]}' if lines else ''), self.host)
        return super()._diagnose(stderr, status)



def _path(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else os.path.abspath(os.path.expanduser(os.fspath(path)))


__all__ = ['ParamikoTunnel']
