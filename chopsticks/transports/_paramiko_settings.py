"""What a ParamikoTunnel connects with: OpenSSH options, ssh_config, known_hosts.

:class:`~chopsticks.transports.paramiko.ParamikoTunnel` takes the same
``ssh_options`` as SSHTunnel (OpenSSH option names). This module turns them,
the keywords and ``~/.ssh/config`` into one :class:`Settings`, maps OpenSSH
algorithm lists onto paramiko's, and keeps a process-wide parsed copy of each
known_hosts file (:class:`KnownHosts`), so a fan-out does not parse the file
once per host. paramiko itself is imported on first use.
"""
from __future__ import annotations

import fcntl
import fnmatch
import os
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

# The same names, policies and option syntax as SSHTunnel, from one place.
from .ssh import HOST_KEY_POLICIES, USER, SSHOptions, check_name, parse_options

#: Options applied to the connection.
APPLIED = frozenset((
    'hostname', 'port', 'user', 'identityfile', 'identitiesonly', 'userknownhostsfile',
    'globalknownhostsfile', 'stricthostkeychecking', 'hostkeyalias', 'hashknownhosts',
    'kexalgorithms', 'hostkeyalgorithms', 'ciphers', 'macs', 'pubkeyacceptedalgorithms',
    'pubkeyacceptedkeytypes', 'connecttimeout', 'compression', 'serveraliveinterval',
    'tcpkeepalive', 'addressfamily', 'batchmode'))
#: Options accepted and ignored: no meaning in-process, or always so here.
IGNORED = frozenset((
    'passwordauthentication', 'kbdinteractiveauthentication',
    'challengeresponseauthentication', 'preferredauthentications', 'controlmaster',
    'controlpath', 'controlpersist', 'loglevel', 'checkhostip', 'updatehostkeys',
    'serveralivecountmax', 'visualhostkey', 'forwardagent', 'forwardx11', 'requesttty',
    'connectionattempts'))
PROXIES = {'proxyjump': 'ProxyJump', 'proxycommand': 'ProxyCommand'}
#: Keys a keyword owns: the keyword wins when given (as with SSHTunnel).
PARAMETER_KEYS = {'port': 'port', 'user': 'user', 'identityfile': 'identity_file',
                  'identitiesonly': 'identity_file', 'userknownhostsfile': 'known_hosts'}
_KEX_ALIASES = {'curve25519-sha256': 'curve25519-sha256@libssh.org'}
RSA_TYPES = ('rsa-sha2-512', 'rsa-sha2-256')



def lib() -> Any:
    """paramiko, imported on first use (~150 ms: ``import chopsticks`` stays lean)."""
    try:
        import paramiko
    except ImportError as exc:
        raise ImportError("ParamikoTunnel needs paramiko: pip install 'chopsticks[ssh]'") \
            from exc
    return paramiko


def normalise_options(options: SSHOptions) -> dict[str, str]:
    """``{'lowercase key': 'value'}`` from a mapping or ``'Key=value'`` strings.

    Raises ValueError for malformed entries, for options this transport can
    neither apply nor safely ignore, and for proxies.
    """
    out: dict[str, str] = {}
    for key, raw in parse_options(options):
        value = raw.strip()
        name = key.lower()
        if name in PROXIES:
            raise ValueError(f'ParamikoTunnel cannot use {key}: use SSHTunnel (OpenSSH) '
                             'for proxies')
        if name not in APPLIED and name not in IGNORED:
            raise ValueError(f'ssh option {key!r} is not supported by ParamikoTunnel '
                             f'(applied: {", ".join(sorted(APPLIED))}; accepted and '
                             f'ignored: {", ".join(sorted(IGNORED))})')
        out[name] = value
    return out


def algorithms(option: str, spec: str, default: tuple[str, ...],
               supported: Iterable[str]) -> tuple[str, ...]:
    """Apply an OpenSSH algorithm list (``a,b`` / ``+a`` / ``-a*`` / ``^a``) to paramiko's."""
    spec = spec.strip()
    op = spec[:1] if spec[:1] in ('+', '-', '^') else ''
    names = [_KEX_ALIASES.get(n.strip(), n.strip())
             for n in (spec[1:] if op else spec).split(',') if n.strip()]
    if op == '-':
        result = tuple(d for d in default if not any(fnmatch.fnmatchcase(d, n) for n in names))
    else:
        known = sorted(set(supported))
        wanted: list[str] = []
        for n in names:
            for match in (k for k in known if fnmatch.fnmatchcase(k, n)):
                if match not in wanted:
                    wanted.append(match)
        if op == '+':
            result = default + tuple(w for w in wanted if w not in default)
        elif op == '^':
            result = tuple(wanted) + tuple(d for d in default if d not in wanted)
        else:
            result = tuple(wanted)
    if not result:
        raise ValueError(f'{option}={spec!r} leaves no algorithm paramiko implements '
                         f'(it knows: {", ".join(sorted(supported))})')
    return result


def _yes(value: str) -> bool:
    return value.lower() in ('yes', 'true', 'on')


@dataclass
class Settings:
    """Everything one connect needs, resolved from keywords, options and config."""

    host: str
    hostname: str
    port: int = 22
    user: str = ''
    identity_files: list[str] = field(default_factory=list)
    identities_only: bool = False
    known_hosts: list[str] = field(default_factory=list)
    global_known_hosts: list[str] = field(default_factory=list)
    policy: str = 'strict'
    host_key_alias: str | None = None
    hash_known_hosts: bool = False
    kex: tuple[str, ...] | None = None
    key_types: tuple[str, ...] | None = None
    ciphers: tuple[str, ...] | None = None
    macs: tuple[str, ...] | None = None
    pubkeys: tuple[str, ...] | None = None
    tcp_timeout: float | None = None
    compression: bool = False
    keepalive: int = 0
    tcp_keepalive: bool = True
    family: int = socket.AF_UNSPEC

    @property
    def known_hosts_name(self) -> str:
        """The name known_hosts records this server under (``[host]:port`` off 22)."""
        name = self.host_key_alias or self.hostname
        return name if self.port == 22 else f'[{name}]:{self.port}'


def apply_options(settings: Settings, options: Mapping[str, Any], source: str,
                  policy: str | None = None) -> Settings:
    """A copy of ``settings`` with OpenSSH ``options`` (lowercase keys) applied.

    ``policy`` is the tunnel's host_key_policy: StrictHostKeyChecking may
    only repeat it (as for SSHTunnel); from ssh_config it may set it.
    """
    transport = lib().Transport
    s = replace(settings)
    for key, value in options.items():
        if key == 'hostname':
            s.hostname = value
        elif key == 'port':
            s.port = int(value)
            if not 0 < s.port < 65536:
                raise ValueError(f'{source}: invalid Port {value!r}')
        elif key == 'user':
            check_name('user', value, USER)
            s.user = value
        elif key == 'identityfile':
            s.identity_files = [value] if isinstance(value, str) else list(value)
        elif key == 'identitiesonly':
            s.identities_only = _yes(value)
        elif key == 'userknownhostsfile':
            s.known_hosts = value.split() if isinstance(value, str) else list(value)
        elif key == 'globalknownhostsfile':
            s.global_known_hosts = value.split() if isinstance(value, str) else list(value)
        elif key == 'batchmode':
            if value.lower() != 'yes':
                raise ValueError(f'{source}: BatchMode is always yes: chopsticks never prompts')
        elif key == 'stricthostkeychecking':
            low = value.lower()
            if policy is not None and low != HOST_KEY_POLICIES[policy]:
                raise ValueError(f'StrictHostKeyChecking={value} in {source}: set '
                                 'host_key_policy instead (strict or accept-new)')
            s.policy = 'accept-new' if low == 'accept-new' else 'strict'
        elif key == 'hostkeyalias':
            s.host_key_alias = value
        elif key == 'hashknownhosts':
            s.hash_known_hosts = _yes(value)
        elif key == 'kexalgorithms':
            s.kex = algorithms('KexAlgorithms', value, transport._preferred_kex,
                               transport._kex_info)
        elif key == 'hostkeyalgorithms':
            s.key_types = algorithms('HostKeyAlgorithms', value, transport._preferred_keys,
                                     transport._key_info)
        elif key == 'ciphers':
            s.ciphers = algorithms('Ciphers', value, transport._preferred_ciphers,
                                   transport._cipher_info)
        elif key == 'macs':
            s.macs = algorithms('MACs', value, transport._preferred_macs,
                                transport._mac_info)
        elif key in ('pubkeyacceptedalgorithms', 'pubkeyacceptedkeytypes'):
            s.pubkeys = algorithms('PubkeyAcceptedAlgorithms', value,
                                   transport._preferred_pubkeys, transport._key_info)
        elif key == 'connecttimeout':
            s.tcp_timeout = float(value)
        elif key == 'compression':
            s.compression = _yes(value)
        elif key == 'serveraliveinterval':
            s.keepalive = int(value)
        elif key == 'tcpkeepalive':
            s.tcp_keepalive = _yes(value)
        elif key == 'addressfamily':
            s.family = {'inet': socket.AF_INET, 'inet6': socket.AF_INET6}.get(
                value.lower(), socket.AF_UNSPEC)
    return s


_config_cache: dict[str, tuple[tuple[int, int], Any]] = {}
_config_lock = threading.Lock()


def ssh_config_for(path: str, host: str) -> dict[str, Any]:
    """The ssh_config settings for ``host`` (the file parsed once per version)."""
    path = os.path.expanduser(path)
    try:
        st = os.stat(path)
    except OSError:
        return {}
    stamp = (st.st_mtime_ns, st.st_size)
    with _config_lock:
        cached = _config_cache.get(path)
        if cached is None or cached[0] != stamp:
            cached = _config_cache[path] = (stamp, lib().SSHConfig.from_path(path))
    found: dict[str, Any] = cached[1].lookup(host)
    return found


class KnownHosts:
    """One known_hosts file, parsed once per version and shared by every tunnel.

    Keys are compared as ``(type, base64 blob)``: no key object is built for
    the thousands of lines a fleet's file has. Hashed names, wildcard
    patterns and ``@revoked`` lines are understood; ``@cert-authority``
    lines are skipped (paramiko has no host certificates). Thread-safe:
    unpatched, tunnels connect in OS threads.
    """

    _files: ClassVar[dict[str, KnownHosts]] = {}
    _files_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.stamp: tuple[int, int, int] | None = None
        self.exact: dict[str, list[tuple[str, str]]] = {}
        self.hashed: list[tuple[str, str, str]] = []
        self.patterns: list[tuple[list[str], str, str]] = []
        self.revoked: set[tuple[str, str]] = set()

    @classmethod
    def get(cls, path: str) -> KnownHosts:
        """The shared, up-to-date copy of the file at ``path``."""
        path = os.path.abspath(os.path.expanduser(path))
        with cls._files_lock:
            known = cls._files.get(path)
            if known is None:
                known = cls._files[path] = KnownHosts(path)
        known.refresh()
        return known

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def refresh(self) -> None:
        with self.lock:
            stamp = self._stat()
            if stamp == self.stamp:
                return
            self.exact, self.hashed, self.patterns, self.revoked = {}, [], [], set()
            self.stamp = stamp
            if stamp is None:
                return
            try:
                with open(self.path, encoding='utf-8', errors='replace') as f:
                    for line in f:
                        self._parse(line)
            except OSError:
                pass

    def _parse(self, line: str) -> None:
        fields = line.split()
        if not fields or fields[0].startswith('#'):
            return
        if fields[0].startswith('@'):
            if fields[0] == '@revoked' and len(fields) >= 4:
                self.revoked.add((fields[2], fields[3]))
            return
        if len(fields) >= 3:
            self._index(fields[0], fields[1], fields[2])

    def _index(self, names: str, keytype: str, blob: str) -> None:
        if names.startswith('|1|'):
            self.hashed.append((names, keytype, blob))
        elif any(c in names for c in '*?!'):
            self.patterns.append((names.split(','), keytype, blob))
        else:
            for name in names.split(','):
                self.exact.setdefault(name, []).append((keytype, blob))

    def lookup(self, name: str) -> list[tuple[str, str]]:
        """``[(keytype, base64)]`` recorded for ``name``."""
        with self.lock:
            found = list(self.exact.get(name, ()))
            if self.hashed:
                hash_host = lib().HostKeys.hash_host
                for hashed, keytype, blob in self.hashed:
                    if hash_host(name, hashed) == hashed:
                        found.append((keytype, blob))
            for parts, keytype, blob in self.patterns:
                if _pattern_match(parts, name):
                    found.append((keytype, blob))
        return found

    def is_revoked(self, keytype: str, blob: str) -> bool:
        return (keytype, blob) in self.revoked

    def add(self, name: str, keytype: str, blob: str, hashed: bool = False) -> None:
        """Append a key for ``name``, under an flock (other processes append too)."""
        recorded = lib().HostKeys.hash_host(name) if hashed else name
        directory = os.path.dirname(self.path)
        with self.lock:
            if (keytype, blob) in self.exact.get(name, ()):
                return
            if directory and not os.path.isdir(directory):
                os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                newline = b''
                if size and os.pread(fd, 1, size - 1) != b'\n':
                    newline = b'\n'
                os.write(fd, newline + f'{recorded} {keytype} {blob}\n'.encode())
            finally:
                os.close(fd)  # and the flock with it
            self._index(recorded, keytype, blob)
            self.stamp = self._stat()


def _pattern_match(parts: list[str], name: str) -> bool:
    matched = False
    for pattern in parts:
        if pattern.startswith('!'):
            if fnmatch.fnmatchcase(name, pattern[1:]):
                return False
        elif fnmatch.fnmatchcase(name, pattern):
            matched = True
    return matched
