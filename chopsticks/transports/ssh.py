"""SSHTunnel: agents on remote hosts, through the OpenSSH client (``ssh``).

This module owns the ``ssh`` command line (built from validated parameters,
so no host name, user name or path ever reaches a shell unquoted), starting
it as a local child process, and turning what ssh printed before the agent's
handshake into the right :class:`~chopsticks.errors.ConnectError` subclass.
"""
from __future__ import annotations

import math
import os
import re
import shlex
from typing import ClassVar, Iterable, Mapping, Union

from .._base import BaseTunnel
from ..errors import AuthenticationError, ConnectError, ConnectionRefused, ConnectTimeout, \
    HostKeyError, InterpreterNotFound, NameResolutionError, SudoPasswordRequired
from ._process import spawn
from .base import AgentPipes

__all__ = ['HOST_KEY_POLICIES', 'SSHOptions', 'SSHTunnel']
# HOST, USER, check_name and parse_options are shared with ParamikoTunnel.

#: What ``ssh_options`` accepts: a mapping, or ``'Key=Value'`` strings.
SSHOptions = Union[Mapping[str, Union[str, int]], Iterable[str], None]

#: ``host_key_policy`` -> ssh's ``StrictHostKeyChecking``. Never ``no``.
HOST_KEY_POLICIES = {'strict': 'yes', 'accept-new': 'accept-new'}

# Allow-lists, not deny-lists: ssh substitutes the host (%h) and user (%u)
# into ProxyCommand and ``Match exec`` lines, which run through a shell.
HOST = re.compile(r'[A-Za-z0-9_.:%][A-Za-z0-9_.:%-]*\Z')
USER = re.compile(r'[A-Za-z0-9_.][A-Za-z0-9_.@-]*\Z')
_OPTION_KEY = re.compile(r'[A-Za-z][A-Za-z0-9]*\Z')
_CONTROL = re.compile(r'[\x00-\x1f\x7f]')
_PERMISSION_DENIED = re.compile(r'Permission denied \([^)]*\)')

# ssh_options keys that a parameter owns: the parameter wins when given.
_PARAMETER_KEYS = {'port': 'port', 'user': 'user', 'identityfile': 'identity_file',
                   'identitiesonly': 'identity_file',
                   'userknownhostsfile': 'known_hosts', 'connecttimeout': 'connect_timeout'}


class SSHTunnel(BaseTunnel):
    """An agent on ``host``, started through the OpenSSH client.

    Runs ``ssh -T -o BatchMode=yes ... -- host 'exec python -E -S -c ...'``
    and speaks to the agent over ssh's stdin and stdout. The user's
    ``~/.ssh/config`` applies (aliases, ProxyJump, ControlMaster, ...): no
    ``-F`` is passed. ssh never prompts: ``BatchMode`` is always on, so a
    missing key, password or host key fails at once with a clear error.

    Parameters:

    ``host``
        A host name, address or ``~/.ssh/config`` alias, optionally as
        ``user@host``. It is the tunnel's identity (results are keyed by
        it). Letters, digits and ``_ . : % -`` only, not starting with
        ``-``; anything else (spaces, shell metacharacters) is a
        :class:`ValueError`.
    ``user``
        The remote login (``ssh -l``); default: from ssh_config, else the
        local user. Not together with ``user@host``.
    ``port``
        The TCP port (``ssh -p``); default: from ssh_config, else 22.
    ``sudo``
        Run the agent as root on the remote through ``sudo -n`` (which
        never prompts: where it needs a password, connecting raises
        :class:`~chopsticks.errors.SudoPasswordRequired`).
    ``python``
        The remote interpreter (default ``/usr/bin/python3``; see
        :attr:`~chopsticks._base.BaseTunnel.python3`).
    ``identity_file``
        A private key to log in with (``ssh -i``); ssh then offers only this
        key (``IdentitiesOnly=yes``).
    ``known_hosts``
        The known_hosts file to check host keys against (and where
        ``accept-new`` records them); default: ssh's own
        (``~/.ssh/known_hosts`` and the global file).
    ``host_key_policy``
        ``'strict'`` (default): a host whose key is unknown or changed
        fails with :class:`~chopsticks.errors.HostKeyError`.
        ``'accept-new'``: the key of a host never seen is recorded in
        ``known_hosts`` and accepted; a changed key still fails.
    ``connect_timeout``
        Seconds for everything up to the agent's handshake: TCP connect,
        SSH handshake, login and interpreter start. A server that accepts
        and then says nothing fails with
        :class:`~chopsticks.errors.ConnectTimeout` after this long, and its
        ssh process is killed. ssh's own ``ConnectTimeout`` is set to this,
        rounded up to whole seconds.
    ``ssh_options``
        Extra ``-o`` options: a mapping ``{'KexAlgorithms':
        'curve25519-sha256'}`` or an iterable of ``'Key=Value'`` strings.
        Keys are letters and digits; values may not contain control
        characters. A parameter given explicitly wins over the same key here
        (``Port``, ``User``, ``IdentityFile``, ``UserKnownHostsFile``;
        ``ConnectTimeout`` always comes from ``connect_timeout``).
        ``BatchMode`` can only be ``yes`` and ``StrictHostKeyChecking`` only
        what ``host_key_policy`` says.

    The key exchange: OpenSSH's default (post-quantum ``sntrup761x25519``
    or ``mlkem768x25519``) costs about 100 ms of CPU per connection on each
    side, against about 12 ms for ``curve25519-sha256``. chopsticks keeps
    OpenSSH's default, because forcing a classical key exchange would drop
    post-quantum protection, override the user's own ``KexAlgorithms`` in
    ssh_config, and break servers that do not offer curve25519 (FIPS mode).
    For a large fan-out, choose it yourself, for one tunnel with
    ``ssh_options={'KexAlgorithms': 'curve25519-sha256'}``, or for every
    SSHTunnel of the process::

        SSHTunnel.kex_algorithms = '^curve25519-sha256'   # preferred, others still allowed

    (the ``^`` form puts curve25519 first and keeps the default list as a
    fallback; a plain list allows nothing else), or in ``~/.ssh/config``.

    Scale: for thousands of hosts this OpenSSH transport is the right one.
    Each tunnel is one ``ssh`` process, so the SSH handshakes and encryption
    run in parallel outside the controller and use every core, and the
    controller holds only 2 file descriptors per tunnel (the socket to ssh's
    stdin/stdout and the pipe from its stderr). Each server's sshd
    ``MaxStartups`` bounds how many handshakes it takes at once (``10:30:100``
    by default: past 10 unauthenticated connections it drops new ones at
    random, shown as a ConnectError naming MaxStartups); ``Group(concurrency=)``
    keeps a fan-out below it.

    The remote login shell must be a POSIX-like shell (sh, dash, bash, zsh,
    ksh): the agent's command line is quoted for it with :func:`shlex.join`.
    """

    #: ``KexAlgorithms`` for every SSHTunnel unless ``ssh_options`` sets it;
    #: ``None`` leaves it to ssh_config and OpenSSH's default.
    kex_algorithms: ClassVar[str | None] = None
    #: The OpenSSH client to run.
    ssh_command: ClassVar[str] = 'ssh'

    def __init__(self, host: str, user: str | None = None, port: int | None = None,
                 sudo: bool = False, *, python: str | None = None,
                 identity_file: str | os.PathLike[str] | None = None,
                 known_hosts: str | os.PathLike[str] | None = None,
                 host_key_policy: str = 'strict', connect_timeout: float = 10.0,
                 ssh_options: SSHOptions = None) -> None:
        super().__init__(host, python=python, connect_timeout=connect_timeout)
        check_arguments(host, user, port, host_key_policy, self.connect_timeout)
        self.user = user
        self.port = port
        self.sudo = bool(sudo)
        self.identity_file = _local_path('identity_file', identity_file)
        self.known_hosts = _local_path('known_hosts', known_hosts)
        self.host_key_policy = host_key_policy
        self.ssh_options = self._merge_options(parse_options(ssh_options))

    def _merge_options(self, options: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Check ``ssh_options`` against the parameters; drop what a parameter owns."""
        kept = []
        for key, value in options:
            lower = key.lower()
            if lower == 'batchmode':
                if value.lower() != 'yes':
                    raise ValueError('BatchMode is always yes: chopsticks never prompts')
                continue
            if lower == 'stricthostkeychecking':
                if value.lower() != HOST_KEY_POLICIES[self.host_key_policy]:
                    raise ValueError(f'StrictHostKeyChecking={value} in ssh_options: set '
                                     f'host_key_policy instead (strict or accept-new)')
                continue
            if lower == 'user':
                check_name('user', value, USER)
            owner = _PARAMETER_KEYS.get(lower)
            if owner is not None and getattr(self, owner) is not None:
                continue
            kept.append((key, value))
        return kept

    # The command line
    def _ssh_argv(self) -> list[str]:
        """The full ``ssh`` argv: options, ``--``, host, remote command."""
        argv = [self.ssh_command, '-T', '-e', 'none',
                '-o', 'BatchMode=yes',
                '-o', f'ConnectTimeout={max(1, math.ceil(self.connect_timeout))}',
                '-o', f'StrictHostKeyChecking={HOST_KEY_POLICIES[self.host_key_policy]}']
        if self.known_hosts is not None:
            argv += ['-o', f'UserKnownHostsFile="{_ssh_token(self.known_hosts)}"']
        if self.port is not None:
            argv += ['-p', str(self.port)]
        if self.user is not None:
            argv += ['-l', self.user]
        if self.identity_file is not None:
            argv += ['-i', _ssh_token(self.identity_file), '-o', 'IdentitiesOnly=yes']
        kex = type(self).kex_algorithms
        if kex and not any(k.lower() == 'kexalgorithms' for k, _ in self.ssh_options):
            argv += ['-o', f'KexAlgorithms={kex}']
        for key, value in self.ssh_options:
            argv += ['-o', f'{key}={value}']
        return argv + ['--', self.host, self._remote_command()]

    def _remote_command(self) -> str:
        return remote_command(self._agent_argv(), self.sudo)

    # Hooks
    def _start(self) -> AgentPipes:
        try:
            return spawn(self.host, self._ssh_argv())
        except InterpreterNotFound as exc:
            raise ConnectError(f'cannot run the OpenSSH client {self.ssh_command!r}: '
                               'install openssh-client', self.host) from exc

    def _diagnose(self, stderr: str, status: int | None) -> ConnectError:
        """Map what ssh (or the remote shell, or sudo) printed to an error class.

        The message is ssh's own line, so the reason reads as ssh gave it.
        """
        lines = [line.strip() for line in stderr.replace('\r', '\n').split('\n')]
        lines = [line for line in lines if line and not line.startswith('@')]

        def find(*needles: str) -> str | None:
            """The first line holding a needle, trying the needles in order."""
            for needle in needles:
                for line in lines:
                    if needle in line:
                        return line
            return None

        host = self.host
        line = find('has changed and you have requested strict checking',
                    'host key is known for', 'Host key verification failed')
        if line is not None:
            where = self.known_hosts or 'ssh_config and ~/.ssh/known_hosts'
            return HostKeyError(f'{line} (host_key_policy={self.host_key_policy!r}, '
                                f'known_hosts: {where})', host)
        line = next((line for line in lines if _PERMISSION_DENIED.search(line)), None) \
            or find('Too many authentication failures')
        if line is not None:
            return AuthenticationError(line, host)
        line = find('Connection refused')
        if line is not None:
            return ConnectionRefused(line, host)
        line = find('timed out')
        if line is not None:
            return ConnectTimeout(line, host)
        line = find('Could not resolve hostname')
        if line is not None:
            return NameResolutionError(line, host)
        if self.sudo:
            line = find('a password is required', 'a terminal is required')
            if line is not None:
                return SudoPasswordRequired(f'sudo -n needs a password on the remote: {line}',
                                            host)
        line = find(self.interpreter)
        if line is not None and ('not found' in line or 'No such file' in line):
            return InterpreterNotFound(f'remote python {self.interpreter!r} not found: {line}',
                                       host)
        if status == 127 and self.sudo and find('sudo'):
            return ConnectError(f'sudo is not installed on the remote: {find("sudo")}', host)
        line = find('not found', 'No such file')
        if status == 127 and line is not None:
            return InterpreterNotFound(f'remote python {self.interpreter!r} not found: {line}',
                                       host)
        last = lines[-1] if lines else ''
        if 'kex_exchange_identification' in last or 'Connection closed by' in last \
                or 'Connection reset by' in last:
            return ConnectError(f'{last} (the server dropped the connection during the '
                                'handshake: its sshd MaxStartups may be full; lower '
                                'the group concurrency)', host)
        if not last:
            return ConnectError(f'ssh exited with status {status} before the agent '
                                'started, printing nothing', host)
        return ConnectError(f'{last} (exit status {status})', host)


def remote_command(agent_argv: list[str], sudo: bool) -> str:
    """The agent's argv quoted for the remote login shell; ``exec`` saves a process."""
    if sudo:
        agent_argv = ['sudo', '-n', '--', *agent_argv]
    return 'exec ' + shlex.join(agent_argv)


def check_arguments(host: str, user: str | None, port: int | None,
                    host_key_policy: str, connect_timeout: float) -> tuple[str, str | None]:
    """Check the keywords SSHTunnel and ParamikoTunnel share.

    Returns the host name and the user given in ``user@host`` (or None).
    """
    host_user, _, name = host.rpartition('@')
    check_name('host', name, HOST)
    if host_user:
        check_name('user', host_user, USER)
        if user is not None:
            raise ValueError(f'user given twice: in {host!r} and as user={user!r}')
    if user is not None:
        check_name('user', user, USER)
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 0 < port < 65536):
        raise ValueError(f'port must be an int in 1..65535, not {port!r}')
    if host_key_policy not in HOST_KEY_POLICIES:
        raise ValueError(f'host_key_policy must be one of '
                         f'{", ".join(map(repr, HOST_KEY_POLICIES))}, '
                         f'not {host_key_policy!r}')
    if not connect_timeout > 0:
        raise ValueError(f'connect_timeout must be positive, not {connect_timeout!r}')
    return name, host_user or None


def check_name(what: str, value: object, pattern: re.Pattern[str]) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(
            f'invalid {what} {value!r}: use letters, digits and "_.:%-" (not first: "-"), '
            f'or an alias from ~/.ssh/config')


def _local_path(what: str, path: str | os.PathLike[str] | None) -> str | None:
    """An absolute path; refused where ssh's config syntax could not carry it."""
    if path is None:
        return None
    text = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if _CONTROL.search(text) or '"' in text or '\\' in text or '${' in text:
        raise ValueError(f'{what} path {text!r} contains characters ssh cannot take')
    return text


def _ssh_token(path: str) -> str:
    """Escape ``%`` so ssh's token expansion leaves the path as it is."""
    return path.replace('%', '%%')


def parse_options(options: SSHOptions) -> list[tuple[str, str]]:
    """``ssh_options`` as validated ``(key, value)`` pairs, in order."""
    if options is None:
        return []
    if isinstance(options, (str, bytes)):
        raise TypeError('ssh_options must be a mapping or an iterable of "Key=Value" '
                        'strings, not one string')
    pairs: list[tuple[object, object]] = []
    if isinstance(options, Mapping):
        pairs = list(options.items())
    else:
        for item in options:
            if not isinstance(item, str) or '=' not in item:
                raise ValueError(f'ssh option {item!r} is not a "Key=Value" string')
            name, _, text = item.partition('=')
            pairs.append((name.strip(), text.strip()))
    checked = []
    for key, raw in pairs:
        if not isinstance(key, str) or not _OPTION_KEY.match(key):
            raise ValueError(f'invalid ssh option name {key!r}: letters and digits only')
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            raise ValueError(f'ssh option {key}: the value must be a string or int, '
                             f'not {raw!r}')
        value = str(raw)
        if not value.strip() or _CONTROL.search(value):
            raise ValueError(f'ssh option {key}: invalid value {value!r}')
        checked.append((key, value))
    return checked
