"""SSHTunnel (OpenSSH client) against the real sshd fleet: calls, files, failures, safety."""
from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import time

import gevent
import pytest

import chopsticks
from chopsticks import errors
from chopsticks.facts import python_version
from chopsticks.group import Group
from chopsticks.transports.ssh import SSHTunnel
from chopsticks.tunnel import Local, Tunnel
from tests.fleet import procs
from tests.servedpkg.ssh_calls import import_served, whoami, write_stderr
from tests.fleet.sshd import SSH_KEYGEN, free_port, silent_listener

pytestmark = pytest.mark.ssh

#: Seconds a failure that the issue calls "fast" may take.
FAST = 3.0


def tunnel(fleet, host=None, **kwargs):
    """An SSHTunnel to a fleet host with the fleet's credentials and fast kex."""
    options = {'KexAlgorithms': fleet.ssh_options['KexAlgorithms'],
               'GlobalKnownHostsFile': '/dev/null', 'ControlMaster': 'no'}
    options.update(kwargs.pop('ssh_options', {}))
    kwargs.setdefault('user', fleet.user)
    kwargs.setdefault('port', fleet.port)
    kwargs.setdefault('identity_file', fleet.identity_file)
    kwargs.setdefault('known_hosts', fleet.known_hosts)
    kwargs.setdefault('connect_timeout', 10)
    return SSHTunnel(host or fleet.hosts[0], ssh_options=options, **kwargs)


class RecordingTunnel(SSHTunnel):
    """Remembers the PID of each ssh process it starts."""

    def _start(self):
        pipes = super()._start()
        self.pids = getattr(self, 'pids', []) + [pipes.process.popen.pid]
        return pipes


def pwned_files(*dirs):
    return [os.path.join(d, 'pwned') for d in dirs if os.path.exists(os.path.join(d, 'pwned'))]


# --- API, argv and validation (no server needed) ------------------------------------

def test_public_names():
    assert Tunnel is SSHTunnel
    assert chopsticks.SSHTunnel is SSHTunnel and chopsticks.Tunnel is SSHTunnel
    assert 'SSHTunnel' in chopsticks.tunnel.__all__ and 'Tunnel' in chopsticks.tunnel.__all__
    assert issubclass(errors.NameResolutionError, errors.ConnectError)


def test_repr_eq_hash():
    assert repr(SSHTunnel('h')) == "SSHTunnel('h')"
    assert SSHTunnel('h', port=22) == SSHTunnel('h') and SSHTunnel('h') != SSHTunnel('g')
    assert hash(SSHTunnel('h')) == hash(SSHTunnel('h', user='u'))
    assert SSHTunnel('h') != Local('h')


def test_argv():
    tun = SSHTunnel('web1', user='deploy', port=2222, identity_file='/keys/id',
                    known_hosts='/kh/known hosts', connect_timeout=2.5,
                    ssh_options={'KexAlgorithms': 'curve25519-sha256'})
    argv = tun._ssh_argv()
    assert argv[0] == 'ssh' and '-T' in argv and '-F' not in argv
    opts = [argv[i + 1] for i, a in enumerate(argv[:-3]) if a == '-o']
    assert 'BatchMode=yes' in opts and 'ConnectTimeout=3' in opts
    assert 'StrictHostKeyChecking=yes' in opts
    assert 'UserKnownHostsFile="/kh/known hosts"' in opts
    assert 'IdentitiesOnly=yes' in opts and 'KexAlgorithms=curve25519-sha256' in opts
    assert argv[argv.index('-p') + 1] == '2222' and argv[argv.index('-l') + 1] == 'deploy'
    assert argv[argv.index('-i') + 1] == '/keys/id'
    assert argv[-3:-1] == ['--', 'web1']
    remote = shlex.split(argv[-1])
    assert remote[0] == 'exec' and remote[1:] == tun._agent_argv()

    sudo = SSHTunnel('web1', sudo=True, python='/opt/py 3/bin/python',
                     host_key_policy='accept-new')._ssh_argv()
    assert shlex.split(sudo[-1])[:6] == ['exec', 'sudo', '-n', '--', '/opt/py 3/bin/python', '-E']
    assert 'StrictHostKeyChecking=accept-new' in sudo
    bare = SSHTunnel('web1')._ssh_argv()
    assert not {'-p', '-l', '-i'} & set(bare)
    assert not any(a.startswith(('UserKnownHostsFile', 'KexAlgorithms')) for a in bare)


def test_ssh_options_forms_and_precedence(monkeypatch):
    as_list = SSHTunnel('h', ssh_options=['Compression=no', 'ServerAliveInterval = 5'])
    assert as_list.ssh_options == [('Compression', 'no'), ('ServerAliveInterval', '5')]
    # Parameters win over the same key in ssh_options; ConnectTimeout is connect_timeout.
    tun = SSHTunnel('h', port=2222, ssh_options={'Port': 22, 'User': 'u', 'ConnectTimeout': 60,
                                                  'BatchMode': 'yes'})
    assert tun.ssh_options == [('User', 'u')]
    argv = tun._ssh_argv()
    assert 'Port=22' not in argv and 'ConnectTimeout=10' in argv
    assert 'ConnectTimeout=60' not in argv
    # The class-wide kex applies unless ssh_options sets it.
    monkeypatch.setattr(SSHTunnel, 'kex_algorithms', '^curve25519-sha256')
    assert 'KexAlgorithms=^curve25519-sha256' in SSHTunnel('h')._ssh_argv()
    argv = SSHTunnel('h', ssh_options={'KexAlgorithms': 'ecdh-sha2-nistp256'})._ssh_argv()
    assert 'KexAlgorithms=ecdh-sha2-nistp256' in argv
    assert not any('curve25519' in a for a in argv)


@pytest.mark.parametrize('host', [
    '-oProxyCommand=touch pwned', 'a b', 'a\tb', 'a\nb', 'x;touch pwned', 'x$(touch pwned)',
    'x`touch pwned`', 'x|y', 'x&y', "x'y", 'x"y', 'x>y', 'x/y', '', '-p', 'user@-x', 'u;x@h'])
def test_bad_host_refused(host):
    with pytest.raises(ValueError):
        SSHTunnel(host)


@pytest.mark.parametrize('user', ['-oops', 'a b', 'a;b', 'a\nb', '$(id)', ''])
def test_bad_user_refused(user):
    with pytest.raises(ValueError):
        SSHTunnel('h', user=user)
    with pytest.raises(ValueError):
        SSHTunnel('h', ssh_options={'User': user or 'x;y'})


@pytest.mark.parametrize('kwargs', [
    {'host_key_policy': 'no'}, {'host_key_policy': 'yes'}, {'host_key_policy': None},
    {'port': 0}, {'port': 70000}, {'port': '22'}, {'port': True},
    {'connect_timeout': 0},
    {'ssh_options': {'Bad Key': 'x'}}, {'ssh_options': {'Key': 'a\nb'}},
    {'ssh_options': {'-oKey': 'x'}}, {'ssh_options': {'Key': ''}},
    {'ssh_options': {'Key': None}}, {'ssh_options': ['NoEquals']},
    {'ssh_options': {'BatchMode': 'no'}}, {'ssh_options': {'StrictHostKeyChecking': 'no'}},
    {'known_hosts': '/tmp/a\nb'}, {'identity_file': '/tmp/"x'},
])
def test_bad_arguments_refused(kwargs):
    with pytest.raises(ValueError):
        SSHTunnel('h', **kwargs)


def test_ambiguous_arguments_refused():
    with pytest.raises(TypeError):
        SSHTunnel('h', ssh_options='KexAlgorithms=curve25519-sha256')
    with pytest.raises(ValueError):
        SSHTunnel('u@h', user='v')
    assert SSHTunnel('u@h').host == 'u@h'


def test_injection_host_refused_and_harmless(ssh_fleet, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for host in ('x;touch pwned', 'x$(touch pwned)', '-oProxyCommand=touch pwned'):
        with pytest.raises(ValueError):
            SSHTunnel(host).connect()
    # The remote command is quoted for the remote shell: a hostile interpreter
    # path is one word there, so nothing runs but a lookup that fails.
    tun = tunnel(ssh_fleet, python='/nonexistent/python3;touch pwned;')
    with pytest.raises(errors.InterpreterNotFound):
        tun.connect()
    with tunnel(ssh_fleet) as tun:
        remote_cwd = tun.call(whoami)[1]
    assert not pwned_files(str(tmp_path), os.getcwd(), remote_cwd, '/tmp', '/', '/root')


# --- calls, imports, files, stderr, sudo ---------------------------------------------

def test_call(ssh_fleet):
    with tunnel(ssh_fleet) as tun:
        before = time.time()
        remote = tun.call(time.time)
        assert before - 1 < remote < time.time() + 1
        assert tun.call(python_version) == tuple(
            int(v) for v in subprocess.check_output(
                ['/usr/bin/python3', '-c', 'import sys; print(*sys.version_info[:3])'],
                text=True).split())
        assert tun.python_version == tun.call(python_version)
        assert tun.call(whoami) == (0, '/root')


def test_served_imports(ssh_fleet):
    with tunnel(ssh_fleet, ssh_fleet.hosts[3]) as tun:
        value, data = tun.call(import_served)
    assert value == 42
    with open(os.path.join(os.path.dirname(__file__), 'servedpkg', 'data', 'resource.txt'),
              'rb') as f:
        assert data == f.read()


def test_put_fetch_round_trip(ssh_fleet, tmp_path):
    payload = os.urandom(700 * 1024) + b'end'
    src = tmp_path / 'src.bin'
    src.write_bytes(payload)
    digest = hashlib.sha1(payload).hexdigest()
    remote_path = str(tmp_path / 'on-remote.bin')
    with tunnel(ssh_fleet, ssh_fleet.hosts[1]) as tun:
        put = tun.put(str(src), remote_path, mode=0o600, timeout=30)
        assert put == {'remote_path': remote_path, 'sha1sum': digest, 'size': len(payload)}
        assert os.stat(remote_path).st_mode & 0o777 == 0o600
        back = tun.fetch(remote_path, str(tmp_path / 'back.bin'), timeout=30)
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
        assert tun.call(time.time) > 0


def test_fleet_options_alone(ssh_fleet):
    """Every setting through ssh_options (mapping and 'Key=Value' forms)."""
    with SSHTunnel(ssh_fleet.hosts[5], ssh_options=ssh_fleet.ssh_options) as tun:
        assert tun.call(python_version)
    as_strings = [f'{k}={v}' for k, v in ssh_fleet.ssh_options.items()]
    with SSHTunnel(ssh_fleet.hosts[6], ssh_options=as_strings) as tun:
        assert tun.call(python_version)


def test_group_mixing_ssh_and_local(ssh_fleet):
    hosts = [ssh_fleet.hosts[i] for i in (0, 7, 16, 17, 19)]  # 16+ are the 2nd sshd
    assert ssh_fleet.pid_for(hosts[0]) != ssh_fleet.pid_for(hosts[3])
    tunnels = [tunnel(ssh_fleet, h) for h in hosts] + [Local('local-a'), Local('local-b')]
    group = Group(tunnels, concurrency=4)
    try:
        result = group.call(python_version)
        times = group.call(time.time)
    finally:
        group.close()
    assert set(result) == set(hosts) | {'local-a', 'local-b'}
    assert list(result.failures()) == []
    assert len({v for _, v in result.successful()}) == 1
    assert all(abs(t - time.time()) < 30 for _, t in times.successful())


def test_group_with_a_failing_ssh_host(ssh_fleet):
    good, bad = ssh_fleet.hosts[8], ssh_fleet.hosts[9]
    group = Group([tunnel(ssh_fleet, good), tunnel(ssh_fleet, bad, port=free_port('127.0.0.1')),
                   Local('local-c')])
    try:
        result = group.call(time.time)
    finally:
        group.close()
    assert [h for h, _ in result.failures()] == [bad]
    assert 'ConnectionRefused' in result[bad].msg
    assert sorted(h for h, _ in result.successful()) == sorted([good, 'local-c'])


# --- failures: each fast and each its own class --------------------------------------

def timed_connect(tun, error):
    started = time.monotonic()
    with pytest.raises(error) as info:
        tun.connect()
    elapsed = time.monotonic() - started
    assert 'unexpected EOF' not in str(info.value)
    assert info.value.host == tun.host and str(info.value).startswith(f'{tun.host}: ')
    assert not tun.connected
    return info.value, elapsed


def test_connection_refused():
    port = free_port('127.0.0.1')
    tun = SSHTunnel('127.0.0.1', port=port, ssh_options={'ControlMaster': 'no'})
    exc, elapsed = timed_connect(tun, errors.ConnectionRefused)
    assert 'Connection refused' in str(exc) and str(port) in str(exc)
    assert elapsed < FAST


def test_silent_server_times_out_and_ssh_is_killed():
    with silent_listener('127.0.0.9') as (addr, port):
        tun = RecordingTunnel(addr, port=port, connect_timeout=1.0,
                              ssh_options={'ControlMaster': 'no'})
        exc, elapsed = timed_connect(tun, errors.ConnectTimeout)
        assert isinstance(exc, TimeoutError)
        assert 0.9 < elapsed < 1.0 + FAST
        assert procs.wait_until(lambda: not procs.pid_alive(tun.pids[0]), 5)


def test_authentication_failure(ssh_fleet, tmp_path):
    wrong = tmp_path / 'wrong_key'
    subprocess.run([SSH_KEYGEN, '-q', '-t', 'ed25519', '-N', '', '-f', str(wrong)], check=True)
    tun = tunnel(ssh_fleet, ssh_fleet.hosts[10], identity_file=wrong)
    exc, elapsed = timed_connect(tun, errors.AuthenticationError)
    assert 'Permission denied (publickey)' in str(exc)
    assert elapsed < FAST


def test_host_keys(ssh_fleet, tmp_path):
    host = ssh_fleet.hosts[11]
    known = tmp_path / 'known_hosts'
    known.write_text('')
    # strict: an unknown host fails, and nothing is recorded.
    exc, elapsed = timed_connect(tunnel(ssh_fleet, host, known_hosts=known), errors.HostKeyError)
    assert 'host key is known' in str(exc) and elapsed < FAST
    assert known.read_text() == ''
    # accept-new: the key is recorded and the call works; then strict accepts it too.
    with tunnel(ssh_fleet, host, known_hosts=known, host_key_policy='accept-new') as tun:
        assert tun.call(python_version)
    found = subprocess.run([SSH_KEYGEN, '-F', f'[{host}]:{ssh_fleet.port}', '-f', str(known)],
                           stdout=subprocess.PIPE, text=True)  # the entry may be hashed
    assert ssh_fleet.host_public_key in found.stdout
    with tunnel(ssh_fleet, host, known_hosts=known) as tun:
        assert tun.call(python_version)
    # A changed key is rejected under both policies.
    bogus = tmp_path / 'changed_known_hosts'
    other = tmp_path / 'other_key'
    subprocess.run([SSH_KEYGEN, '-q', '-t', 'ed25519', '-N', '', '-f', str(other)], check=True)
    other_key = ' '.join(open(f'{other}.pub').read().split()[:2])
    bogus.write_text(f'[{host}]:{ssh_fleet.port} {other_key}\n')
    for policy in ('strict', 'accept-new'):
        tun = tunnel(ssh_fleet, host, known_hosts=bogus, host_key_policy=policy)
        exc, elapsed = timed_connect(tun, errors.HostKeyError)
        assert 'has changed' in str(exc) and elapsed < FAST
    assert bogus.read_text() == f'[{host}]:{ssh_fleet.port} {other_key}\n'


def test_interpreter_not_found(ssh_fleet):
    tun = tunnel(ssh_fleet, ssh_fleet.hosts[12], python='/nonexistent/python3')
    exc, elapsed = timed_connect(tun, errors.InterpreterNotFound)
    assert '/nonexistent/python3' in str(exc) and 'not found' in str(exc)
    assert elapsed < FAST
    tun = tunnel(ssh_fleet, ssh_fleet.hosts[12], python='/nonexistent/python3', sudo=True)
    exc, elapsed = timed_connect(tun, errors.InterpreterNotFound)
    assert '/nonexistent/python3' in str(exc) and elapsed < FAST


def test_name_resolution_failure():
    # AddressFamily=inet6 makes resolving an IPv4 literal fail inside getaddrinfo,
    # with no DNS query leaving the machine.
    tun = SSHTunnel('127.0.0.1', ssh_options={'AddressFamily': 'inet6', 'ControlMaster': 'no'})
    exc, elapsed = timed_connect(tun, errors.NameResolutionError)
    assert 'Could not resolve hostname' in str(exc) and elapsed < FAST


def test_tunnel_recovers_after_a_failure(ssh_fleet, tmp_path):
    """A failed connect leaves the tunnel reusable: fix the cause and connect again."""
    known = tmp_path / 'known_hosts'
    known.write_text('')
    tun = tunnel(ssh_fleet, ssh_fleet.hosts[13], known_hosts=known)
    with pytest.raises(errors.HostKeyError):
        tun.connect()
    known.write_text(open(ssh_fleet.known_hosts).read())
    try:
        assert tun.call(python_version)
    finally:
        tun.close()


def test_control_master_from_ssh_options(ssh_fleet):
    """Multiplexed connections work: the second tunnel rides the first one's master."""
    import tempfile
    control = tempfile.mkdtemp(prefix='cs-cm-', dir='/tmp')
    options = {'ControlMaster': 'auto', 'ControlPath': f'{control}/%C', 'ControlPersist': '30'}
    host = ssh_fleet.hosts[14]
    first = tunnel(ssh_fleet, host, ssh_options=options)
    second = tunnel(ssh_fleet, host, python='/usr/bin/python3', ssh_options=options)
    control_argv = first._ssh_argv()[:-3] + ['-O']
    try:
        with first, second:
            assert first.call(python_version) == second.call(python_version)
            check = subprocess.run(control_argv + ['check', '--', host], stdin=subprocess.DEVNULL,
                                   capture_output=True, text=True, timeout=10)
            assert 'Master running' in check.stderr
            started = time.monotonic()
            with tunnel(ssh_fleet, host, ssh_options=options) as third:
                third.call(time.time)  # no new TCP connection or key exchange
            assert time.monotonic() - started < FAST
    finally:
        subprocess.run(control_argv + ['exit', '--', host], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10)
        procs.wait_until(lambda: not os.listdir(control), 5)
        assert not os.listdir(control)
        os.rmdir(control)
