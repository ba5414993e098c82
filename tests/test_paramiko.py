"""ParamikoTunnel against the real sshd fleet: calls, files, failures, gevent with and without patching."""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import threading
import time

import gevent
import pytest

import chopsticks
from chopsticks import errors
from chopsticks.facts import python_version
from chopsticks.group import Group
from chopsticks.transports import _paramiko_settings as settings_mod
from chopsticks.transports.paramiko import ParamikoTunnel
from chopsticks.tunnel import Local, SSHTunnel
from tests.fleet.sshd import SSH_KEYGEN, free_port, silent_listener
from tests.servedpkg.ssh_calls import import_served, whoami, write_stderr

pytestmark = pytest.mark.ssh

#: Seconds a failure that the issue calls "fast" may take.
FAST = 3.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def no_user_ssh_config(monkeypatch):
    """Tests do not depend on whatever ~/.ssh/config this machine has."""
    monkeypatch.setattr(ParamikoTunnel, 'config_file', None)


def tunnel(fleet, host=None, **kwargs):
    """A ParamikoTunnel to a fleet host with the fleet's credentials and fast kex."""
    options = {'KexAlgorithms': fleet.ssh_options['KexAlgorithms'],
               'GlobalKnownHostsFile': '/dev/null'}
    options.update(kwargs.pop('ssh_options', {}))
    kwargs.setdefault('user', fleet.user)
    kwargs.setdefault('port', fleet.port)
    kwargs.setdefault('identity_file', fleet.identity_file)
    kwargs.setdefault('known_hosts', fleet.known_hosts)
    kwargs.setdefault('connect_timeout', 10)
    return ParamikoTunnel(host or fleet.hosts[0], ssh_options=options, **kwargs)


def paramiko_threads():
    return [t for t in threading.enumerate() if t.name.startswith('chopsticks-paramiko')]


def no_paramiko_threads():
    deadline = time.monotonic() + 5
    while paramiko_threads() and time.monotonic() < deadline:
        gevent.sleep(0.02)
    return not paramiko_threads()


def open_fds():
    return set(os.listdir('/proc/self/fd'))


# --- API and validation (no server needed) -------------------------------------------

def test_public_names():
    assert chopsticks.ParamikoTunnel is ParamikoTunnel
    assert 'ParamikoTunnel' in chopsticks.tunnel.__all__
    assert repr(ParamikoTunnel('h')) == "ParamikoTunnel('h')"
    assert ParamikoTunnel('h') == ParamikoTunnel('h', port=22) != SSHTunnel('h')


def test_import_chopsticks_needs_no_paramiko():
    code = ("import sys; sys.modules['paramiko'] = None\n"
            "import chopsticks\n"
            "from chopsticks.tunnel import *\n"
            "try:\n    ParamikoTunnel('h')\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'chopsticks[ssh]'" in out.stdout


def test_remote_command_is_quoted():
    tun = ParamikoTunnel('web1', sudo=True, python='/opt/py 3/bin/python')
    words = shlex.split(tun.remote_command())
    assert words[:5] == ['exec', 'sudo', '-n', '--', '/opt/py 3/bin/python']
    assert words[4:] == tun._agent_argv()
    assert shlex.split(ParamikoTunnel('web1').remote_command())[1:] == \
        ParamikoTunnel('web1')._agent_argv()


@pytest.mark.parametrize('host', [
    '-oProxyCommand=touch pwned', 'a b', 'a\nb', 'x;touch pwned', 'x$(touch pwned)', 'x/y',
    '', 'user@-x', 'u;x@h'])
def test_bad_host_refused(host):
    with pytest.raises(ValueError):
        ParamikoTunnel(host)


@pytest.mark.parametrize('kwargs', [
    {'host_key_policy': 'no'}, {'host_key_policy': None}, {'port': 0}, {'port': '22'},
    {'port': True}, {'connect_timeout': 0}, {'user': '-oops'}, {'user': 'a b'},
    {'ssh_options': {'Bad Key': 'x'}}, {'ssh_options': {'Port': 'a\nb'}},
    {'ssh_options': {'Port': ''}}, {'ssh_options': ['NoEquals']},
    {'ssh_options': {'NoSuchOption': 'x'}}, {'ssh_options': {'ProxyJump': 'bastion'}},
    {'ssh_options': {'ProxyCommand': 'nc %h %p'}}, {'ssh_options': {'BatchMode': 'no'}},
    {'ssh_options': {'StrictHostKeyChecking': 'no'}},
    {'ssh_options': {'StrictHostKeyChecking': 'accept-new'}},
    {'ssh_options': {'KexAlgorithms': 'sntrup761x25519-sha512@openssh.com'}},
    {'ssh_options': {'User': 'x;y'}}, {'ssh_options': {'Port': 70000}},
])
def test_bad_arguments_refused(kwargs):
    with pytest.raises(ValueError):
        ParamikoTunnel('h', **kwargs)


def test_ambiguous_arguments_refused():
    with pytest.raises(TypeError):
        ParamikoTunnel('h', ssh_options='KexAlgorithms=curve25519-sha256')
    with pytest.raises(ValueError):
        ParamikoTunnel('u@h', user='v')
    tun = ParamikoTunnel('u@h')
    assert tun.host == 'u@h' and tun.settings().user == 'u' and tun.settings().hostname == 'h'


def test_settings_precedence():
    tun = ParamikoTunnel('h', port=2222, identity_file='/keys/id', ssh_options=[
        'Port=22', 'User=u', 'IdentityFile=/other', 'ConnectTimeout=3', 'ControlMaster=auto',
        'ServerAliveInterval=5', 'HashKnownHosts=yes', 'StrictHostKeyChecking=yes'])
    s = tun.settings()
    assert (s.port, s.user, s.identity_files, s.identities_only) == (2222, 'u', ['/keys/id'], True)
    assert (s.tcp_timeout, s.keepalive, s.hash_known_hosts) == (3.0, 5, True)
    assert s.known_hosts_name == '[h]:2222' and s.policy == 'strict'
    assert ParamikoTunnel('h', host_key_policy='accept-new').settings().policy == 'accept-new'


def test_algorithm_lists():
    default = ('a', 'b', 'c-1', 'c-2')
    supported = default + ('d', 'curve25519-sha256@libssh.org')
    assert settings_mod.algorithms('X', 'd,b,nosuch', default, supported) == ('d', 'b')
    assert settings_mod.algorithms('X', '^d', default, supported) == ('d',) + default
    assert settings_mod.algorithms('X', '+d', default, supported) == default + ('d',)
    assert settings_mod.algorithms('X', '-c-*', default, supported) == ('a', 'b')
    assert settings_mod.algorithms('X', 'curve25519-sha256', default, supported) == \
        ('curve25519-sha256@libssh.org',)
    with pytest.raises(ValueError):
        settings_mod.algorithms('X', 'nosuch', default, supported)


# --- calls, imports, files, stderr, sudo ---------------------------------------------

def test_call(ssh_fleet):
    with tunnel(ssh_fleet) as tun:
        before = time.time()
        assert before - 1 < tun.call(time.time) < time.time() + 1
        assert tun.call(python_version) == tuple(
            int(v) for v in subprocess.check_output(
                ['/usr/bin/python3', '-c', 'import sys; print(*sys.version_info[:3])'],
                text=True).split())
        assert tun.python_version == tun.call(python_version)
        assert tun.call(whoami) == (0, '/root')
        assert len(paramiko_threads()) == 1
    assert no_paramiko_threads()


@pytest.mark.parametrize('version', ['2.7.18', '3.6.15'])
def test_old_remote_interpreters(ssh_fleet, version):
    python = os.path.expanduser(f'~/.pyenv/versions/{version}/bin/python')
    if not os.path.exists(python):
        pytest.skip(f'no {python} here')
    with tunnel(ssh_fleet, ssh_fleet.hosts[6], python=python) as tun:
        assert tun.call(python_version) == tuple(int(v) for v in version.split('.'))
        assert tun.call(import_served)[0] == 42


def test_served_imports(ssh_fleet):
    with tunnel(ssh_fleet, ssh_fleet.hosts[3]) as tun:
        value, data = tun.call(import_served)
    assert value == 42
    with open(os.path.join(ROOT, 'tests', 'servedpkg', 'data', 'resource.txt'), 'rb') as f:
        assert data == f.read()


def test_put_fetch_round_trip(ssh_fleet, tmp_path):
    # Bigger than paramiko's 2 MiB window: the pump must wait for window adjusts.
    payload = os.urandom(5 * 1024 * 1024) + b'end'
    src = tmp_path / 'src.bin'
    src.write_bytes(payload)
    digest = hashlib.sha1(payload).hexdigest()
    remote_path = str(tmp_path / 'on-remote.bin')
    with tunnel(ssh_fleet, ssh_fleet.hosts[1]) as tun:
        put = tun.put(str(src), remote_path, mode=0o600, timeout=60)
        assert put == {'remote_path': remote_path, 'sha1sum': digest, 'size': len(payload)}
        assert os.stat(remote_path).st_mode & 0o777 == 0o600
        back = tun.fetch(remote_path, str(tmp_path / 'back.bin'), timeout=60)
    assert back['sha1sum'] == digest and back['size'] == len(payload)
    assert (tmp_path / 'back.bin').read_bytes() == payload


def test_stderr_is_prefixed(ssh_fleet, capfd):
    host = ssh_fleet.hosts[2]
    with tunnel(ssh_fleet, host) as tun:
        assert tun.call(write_stderr, 'first line\nsecond line\n')
        deadline = time.monotonic() + 5
        seen = ''
        while 'second line' not in seen and time.monotonic() < deadline:
            gevent.sleep(0.05)
            seen += capfd.readouterr().err
    assert f'[{host}] first line\n' in seen
    assert f'[{host}] second line\n' in seen


def test_sudo(ssh_fleet):
    with tunnel(ssh_fleet, ssh_fleet.hosts[4], sudo=True) as tun:
        assert tun.call(whoami)[0] == 0


def test_fleet_options_alone(ssh_fleet):
    """Every setting through ssh_options, in both forms: the same dict as for SSHTunnel."""
    with ParamikoTunnel(ssh_fleet.hosts[5], ssh_options=ssh_fleet.ssh_options) as tun:
        assert tun.call(python_version)
    as_strings = [f'{k}={v}' for k, v in ssh_fleet.ssh_options.items()]
    with ParamikoTunnel(ssh_fleet.hosts[6], ssh_options=as_strings) as tun:
        assert tun.call(python_version)


def test_ssh_config_alias(ssh_fleet, tmp_path, monkeypatch):
    config = tmp_path / 'ssh_config'
    config.write_text(f'Host web-alias\n  HostName {ssh_fleet.hosts[7]}\n  Port {ssh_fleet.port}\n'
                      f'  User {ssh_fleet.user}\n  IdentityFile {ssh_fleet.identity_file}\n'
                      f'  UserKnownHostsFile {ssh_fleet.known_hosts}\n'
                      '  KexAlgorithms curve25519-sha256\n  ForwardAgent no\n'
                      'Host behind\n  ProxyJump web-alias\n')
    monkeypatch.setattr(ParamikoTunnel, 'config_file', str(config))
    with ParamikoTunnel('web-alias') as tun:
        assert tun.call(python_version)
    with pytest.raises(errors.ConnectError, match='ProxyJump'):
        ParamikoTunnel('behind').connect()


def test_hub_not_blocked_unpatched(ssh_fleet, monkeypatch):
    """paramiko's blocking handshake runs in the tunnel's thread, never in the hub."""
    import paramiko
    connect = paramiko.SSHClient.connect
    where = []

    def recording_connect(self, *args, **kwargs):
        where.append(threading.get_ident())
        return connect(self, *args, **kwargs)

    monkeypatch.setattr(paramiko.SSHClient, 'connect', recording_connect)
    group = Group([tunnel(ssh_fleet, h) for h in ssh_fleet.hosts[8:12]])
    try:
        result = group.call(time.time)
        assert len(paramiko_threads()) == 4
    finally:
        group.close()
    assert not result.failed and len(where) == 4
    assert threading.get_ident() not in where
    assert no_paramiko_threads()

    # A server that never sends its banner: the hub keeps running meanwhile.
    beats = []

    def heartbeat():
        while True:
            beats.append(time.monotonic())
            gevent.sleep(0.005)

    beater = gevent.spawn(heartbeat)
    try:
        with silent_listener('127.0.0.9') as (addr, port):
            with pytest.raises(errors.ConnectTimeout):
                ParamikoTunnel(addr, port=port, connect_timeout=1.0).connect()
    finally:
        beater.kill()
    gaps = [b - a for a, b in zip(beats, beats[1:])]
    assert len(beats) > 20 and max(gaps) < 0.5, max(gaps)


PATCHED_SCRIPT = '''
from gevent import monkey
monkey.patch_all()
import json, os, sys, threading, time
sys.path.insert(0, {root!r})
from chopsticks.group import Group
from chopsticks.transports.paramiko import ParamikoTunnel
from chopsticks.tunnel import Local
from tests.servedpkg.ssh_calls import import_served
fleet = json.loads(sys.argv[1])
ParamikoTunnel.config_file = None
tunnels = [ParamikoTunnel(h, ssh_options=fleet['options']) for h in fleet['hosts']]
group = Group(tunnels + [Local('local')])
result = group.call(os.getpid)
served = tunnels[0].call(import_served)[0]
src = os.path.join(fleet['tmp'], 'src')
with open(src, 'wb') as f:
    f.write(os.urandom(3 << 20))
put = tunnels[1].put(src, src + '.remote')
back = tunnels[1].fetch(src + '.remote', src + '.back')
threads = [t.name for t in threading.enumerate()]
import gevent
os_threads = len(os.listdir('/proc/self/task')) - gevent.get_hub().threadpool.size
group.close()
print(json.dumps({{'failed': sorted(result.failed), 'ok': sorted(result.succeeded),
                   'served': served, 'same': put['sha1sum'] == back['sha1sum'],
                   'threads': threads, 'os_threads': os_threads, 'patched': monkey.is_module_patched('threading')}}))
'''


def test_monkey_patched_program(ssh_fleet, tmp_path):
    """In a program that called patch_all(), the tunnel's threads are greenlets."""
    script = tmp_path / 'patched.py'
    script.write_text(PATCHED_SCRIPT.format(root=ROOT))
    fleet = {'hosts': ssh_fleet.hosts[12:15], 'options': ssh_fleet.ssh_options,
             'tmp': str(tmp_path)}
    out = subprocess.run([sys.executable, str(script), json.dumps(fleet)], cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report['patched'] and report['failed'] == [] and report['same']
    assert report['ok'] == sorted(ssh_fleet.hosts[12:15] + ['local'])
    assert report['served'] == 42
    # Each tunnel has its two "threads" (paramiko's and ours), but they are greenlets:
    # no OS thread runs but the main one (and gevent's resolver pool, not counted).
    assert sum('chopsticks-paramiko' in name for name in report['threads']) == 3
    assert report['os_threads'] == 1, report


def test_group_mixing_paramiko_ssh_and_local(ssh_fleet):
    hosts = [ssh_fleet.hosts[i] for i in (0, 16, 19)]  # 16+ are on the second sshd
    ssh_host = ssh_fleet.hosts[15]
    ssh = SSHTunnel(ssh_host, user=ssh_fleet.user, port=ssh_fleet.port,
                    identity_file=ssh_fleet.identity_file, known_hosts=ssh_fleet.known_hosts,
                    ssh_options={'KexAlgorithms': 'curve25519-sha256', 'ControlMaster': 'no'})
    group = Group([tunnel(ssh_fleet, h) for h in hosts] + [ssh, Local('local-a')],
                  concurrency=3)
    try:
        result = group.call(python_version)
        times = group.call(time.time)
    finally:
        group.close()
    assert set(result) == set(hosts) | {ssh_host, 'local-a'}
    assert not result.failed and len(set(result.values())) == 1
    assert all(abs(t - time.time()) < 30 for _, t in times.successful())


def test_call_timeout_kills_and_reconnects(ssh_fleet):
    with tunnel(ssh_fleet, ssh_fleet.hosts[9]) as tun:
        first = tun.call(os.getpid)
        started = time.monotonic()
        with pytest.raises(errors.CallTimeout):
            tun.call(time.sleep, 30, timeout=0.5)
        assert time.monotonic() - started < FAST
        assert tun.call(os.getpid) != first
        deadline = time.monotonic() + 5
        while os.path.exists(f'/proc/{first}') and time.monotonic() < deadline:
            gevent.sleep(0.05)
        assert not os.path.exists(f'/proc/{first}')  # the fleet is on this machine


def test_remote_agent_dies(ssh_fleet):
    with tunnel(ssh_fleet, ssh_fleet.hosts[10]) as tun:
        pid = tun.call(os.getpid)
        with pytest.raises(errors.ConnectionLost):
            tun.call(os.kill, pid, 9)
        assert tun.call(os.getpid) != pid


def test_no_fd_or_thread_leaks(ssh_fleet):
    tun = tunnel(ssh_fleet, ssh_fleet.hosts[11])
    tun.call(time.time)
    tun.close()
    assert no_paramiko_threads()
    before = open_fds()
    for _ in range(3):
        tun.call(time.time)
        tun.close()
    assert no_paramiko_threads()
    deadline = time.monotonic() + 5
    while open_fds() - before and time.monotonic() < deadline:
        gevent.sleep(0.05)
    assert open_fds() - before == set()


# --- failures: each fast and each its own class --------------------------------------

def timed_connect(tun, error):
    started = time.monotonic()
    with pytest.raises(error) as info:
        tun.connect()
    elapsed = time.monotonic() - started
    assert info.value.host == tun.host and str(info.value).startswith(f'{tun.host}: ')
    assert not tun.connected
    assert not any('paramiko' in type(e).__module__ for e in _chain(info.value)[:1])
    return info.value, elapsed


def _chain(exc):
    out = []
    while exc is not None:
        out.append(exc)
        exc = exc.__cause__
    return out


def test_connection_refused():
    port = free_port('127.0.0.1')
    exc, elapsed = timed_connect(ParamikoTunnel('127.0.0.1', port=port), errors.ConnectionRefused)
    assert 'refused' in str(exc) and str(port) in str(exc)
    assert elapsed < FAST
    assert no_paramiko_threads()


def test_silent_server_times_out():
    with silent_listener('127.0.0.9') as (addr, port):
        tun = ParamikoTunnel(addr, port=port, connect_timeout=1.0)
        exc, elapsed = timed_connect(tun, errors.ConnectTimeout)
        assert isinstance(exc, TimeoutError) and 'banner' in str(exc)
        assert 0.9 < elapsed < 1.0 + FAST
        assert no_paramiko_threads()


def test_authentication_failure(ssh_fleet, tmp_path):
    wrong = tmp_path / 'wrong_key'
    subprocess.run([SSH_KEYGEN, '-q', '-t', 'ed25519', '-N', '', '-f', str(wrong)], check=True)
    tun = tunnel(ssh_fleet, ssh_fleet.hosts[13], identity_file=wrong)
    exc, elapsed = timed_connect(tun, errors.AuthenticationError)
    assert str(wrong) in str(exc) and ssh_fleet.user in str(exc)
    assert elapsed < FAST


def test_host_keys(ssh_fleet, tmp_path):
    host = ssh_fleet.hosts[14]
    name = f'[{host}]:{ssh_fleet.port}'
    known = tmp_path / 'known_hosts'
    known.write_text('# nothing yet\n')
    # strict: an unknown host fails, and nothing is recorded.
    exc, elapsed = timed_connect(tunnel(ssh_fleet, host, known_hosts=known), errors.HostKeyError)
    assert 'unknown host key' in str(exc) and name in str(exc) and 'SHA256:' in str(exc)
    assert elapsed < FAST and known.read_text() == '# nothing yet\n'
    # accept-new records the key, then strict accepts it too.
    with tunnel(ssh_fleet, host, known_hosts=known, host_key_policy='accept-new') as tun:
        assert tun.call(python_version)
    assert known.read_text() == f'# nothing yet\n{name} {ssh_fleet.host_public_key}\n'
    with tunnel(ssh_fleet, host, known_hosts=known) as tun:
        assert tun.call(python_version)
    # accept-new into a file (and directory) that does not exist yet.
    fresh = tmp_path / 'new' / 'known_hosts'
    with tunnel(ssh_fleet, host, known_hosts=fresh, host_key_policy='accept-new') as tun:
        assert tun.call(python_version)
    assert fresh.read_text() == f'{name} {ssh_fleet.host_public_key}\n'
    # A changed key is rejected under both policies, and the file is left alone.
    other = tmp_path / 'other_key'
    subprocess.run([SSH_KEYGEN, '-q', '-t', 'ed25519', '-N', '', '-f', str(other)], check=True)
    other_key = ' '.join(open(f'{other}.pub').read().split()[:2])
    bogus = tmp_path / 'changed_known_hosts'
    bogus.write_text(f'{name} {other_key}\n')
    for policy in ('strict', 'accept-new'):
        tun = tunnel(ssh_fleet, host, known_hosts=bogus, host_key_policy=policy)
        exc, elapsed = timed_connect(tun, errors.HostKeyError)
        assert 'CHANGED' in str(exc) and elapsed < FAST
    assert bogus.read_text() == f'{name} {other_key}\n'


def test_hashed_and_revoked_known_hosts(ssh_fleet, tmp_path):
    host = ssh_fleet.hosts[15]
    known = tmp_path / 'known_hosts'
    known.write_text(f'[{host}]:{ssh_fleet.port} {ssh_fleet.host_public_key}\n')
    subprocess.run([SSH_KEYGEN, '-q', '-H', '-f', str(known)], check=True,
                   capture_output=True)
    assert host not in known.read_text()
    with tunnel(ssh_fleet, host, known_hosts=known) as tun:
        assert tun.call(python_version)
    with open(known, 'a') as f:
        f.write(f'@revoked * {ssh_fleet.host_public_key}\n')
    exc, _ = timed_connect(tunnel(ssh_fleet, host, known_hosts=known), errors.HostKeyError)
    assert 'revoked' in str(exc)


def test_interpreter_not_found(ssh_fleet):
    for sudo in (False, True):
        tun = tunnel(ssh_fleet, ssh_fleet.hosts[17], python='/nonexistent/python3', sudo=sudo)
        exc, elapsed = timed_connect(tun, errors.InterpreterNotFound)
        assert '/nonexistent/python3' in str(exc) and 'not found' in str(exc)
        assert elapsed < FAST
    assert no_paramiko_threads()


def test_name_resolution_failure():
    # inet6 makes resolving an IPv4 literal fail in getaddrinfo, with no DNS query.
    tun = ParamikoTunnel('127.0.0.1', ssh_options={'AddressFamily': 'inet6'})
    exc, elapsed = timed_connect(tun, errors.NameResolutionError)
    assert elapsed < FAST


def test_group_with_failing_hosts(ssh_fleet):
    good, bad = ssh_fleet.hosts[18], ssh_fleet.hosts[19]
    group = Group([tunnel(ssh_fleet, good), tunnel(ssh_fleet, bad, port=free_port('127.0.0.1')),
                   Local('local-c')])
    try:
        result = group.call(time.time)
    finally:
        group.close()
    assert list(result.failed) == [bad] and 'ConnectionRefused' in result[bad].msg
    assert sorted(result.succeeded) == sorted([good, 'local-c'])
