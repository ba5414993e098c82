"""Docker and DockerExec against a real private dockerd: calls, files, failures, cleanup."""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time

import gevent
import pytest

import chopsticks
from chopsticks import errors
from chopsticks.facts import python_executable, python_version
from chopsticks.group import Group
from chopsticks.transports.docker import Docker, DockerExec
from chopsticks.tunnel import Local
from tests.servedpkg.ssh_calls import import_served, write_stderr

pytestmark = pytest.mark.docker

FAST = 5.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = f'ck-test-{os.getpid()}-'
_names = itertools.count()


def name(tag=''):
    """A container name no other test (or run) uses; cleaned up by ``containers``."""
    return f'{PREFIX}{next(_names)}{tag}'


def listed(client, prefix):
    """Names of containers whose name has ``prefix`` (one request: none vanish mid-list)."""
    return [c['Names'][0].lstrip('/') for c in client.api.containers(
        all=True, filters={'name': prefix})]


def ours(client):
    return listed(client, PREFIX)


@pytest.fixture(autouse=True)
def containers(docker_client):
    """Remove every container this test made, even when it failed."""
    yield
    for container in ours(docker_client):
        try:
            docker_client.api.remove_container(container, force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


@pytest.fixture
def running(docker_client, docker_image):
    """A running container to exec into."""
    container = docker_client.containers.run(
        docker_image, ['/usr/bin/sleep', '600'], detach=True, network_mode='none',
        name=name('-running'))
    return container.name


def docker(client, image, tag='', **kwargs):
    kwargs.setdefault('network_mode', 'none')
    return Docker(name(tag), image, client=client, **kwargs)


def gone(client, container_name, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if container_name not in listed(client, container_name):
            return True
        gevent.sleep(0.05)
    return False


def open_fds():
    return set(os.listdir('/proc/self/fd'))


def open_sockets(fds):
    """The sockets and pipes among ``fds`` (gevent's thread pool workers open loops)."""
    found = {}
    for fd in fds:
        try:
            target = os.readlink(f'/proc/self/fd/{fd}')
        except OSError:
            continue
        if target.startswith(('socket:', 'pipe:')):
            found[fd] = target
    return found


def pooled_fds(client):
    """fds of the SDK's idle keep-alive HTTP connections (one per pool thread, bounded)."""
    fds = set()
    adapter = client.api._custom_adapter
    for key in adapter.pools.keys():
        for conn in list(adapter.pools[key].pool.queue):
            sock = getattr(conn, 'sock', None)
            if sock is not None and sock.fileno() >= 0:
                fds.add(str(sock.fileno()))
    return fds


# --- API (no engine needed) ----------------------------------------------------------

def test_public_names_and_defaults():
    assert chopsticks.Docker is Docker and chopsticks.DockerExec is DockerExec
    assert {'Docker', 'DockerExec'} <= set(chopsticks.tunnel.__all__)
    tun = Docker('web')
    assert tun.host == 'web' and tun.rm and tun.interpreter == 'python3'
    assert tun.image == 'python:%d.%d' % sys.version_info[:2]
    assert Docker('web', 'debian:12').image == 'debian:12'
    assert DockerExec('web').host == 'web' and repr(DockerExec('web')) == "DockerExec('web')"


@pytest.mark.parametrize('bad', ['', '-x', 'a b', 'a/b', 'x;y', '.x'])
def test_bad_names_refused(bad):
    with pytest.raises(ValueError):
        Docker(bad)


def test_reserved_create_options_refused():
    for option in ('command', 'stdin_open', 'tty', 'auto_remove', 'entrypoint'):
        with pytest.raises(ValueError):
            Docker('x', **{option: None})


def test_import_chopsticks_needs_no_docker():
    code = ("import sys; sys.modules['docker'] = None\n"
            "import chopsticks\n"
            "try:\n    chopsticks.Docker('h')\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'chopsticks[docker]'" in out.stdout


# --- Docker: calls, imports, files, stderr -------------------------------------------

def test_call_and_container_removed(docker_client, docker_image):
    tun = docker(docker_client, docker_image)
    with tun:
        assert abs(tun.call(time.time) - time.time()) < 30
        assert tun.call(python_version) == tun.python_version
        assert tun.call(python_executable) == '/usr/bin/python3'  # python3 found on PATH
        assert tun.call(socket.gethostname) != socket.gethostname()  # a container's own
        [container] = docker_client.containers.list(filters={'name': tun.host})
        assert container.name == tun.host and container.status == 'running'
    assert gone(docker_client, tun.host)
    assert not tun.connected


def test_create_options_reach_the_container(docker_client, docker_image):
    with docker(docker_client, docker_image, environment={'CK_TEST': 'yes'},
                working_dir='/tmp') as tun:
        assert tun.call(os.getenv, 'CK_TEST') == 'yes'
        assert tun.call(os.getcwd) == '/tmp'


def test_served_imports(docker_client, docker_image):
    with docker(docker_client, docker_image) as tun:
        value, data = tun.call(import_served)
    assert value == 42
    with open(os.path.join(ROOT, 'tests', 'servedpkg', 'data', 'resource.txt'), 'rb') as f:
        assert data == f.read()


def test_put_fetch_round_trip(docker_client, docker_image, tmp_path):
    payload = os.urandom(3 * 1024 * 1024) + b'end'
    src = tmp_path / 'src.bin'
    src.write_bytes(payload)
    digest = hashlib.sha1(payload).hexdigest()
    with docker(docker_client, docker_image) as tun:
        remote = f'/tmp/{tun.host}.bin'
        put = tun.put(str(src), remote, mode=0o600, timeout=60)
        assert put == {'remote_path': remote, 'sha1sum': digest, 'size': len(payload)}
        assert not os.path.exists(remote)  # in the container's file system, not ours
        back = tun.fetch(remote, str(tmp_path / 'back.bin'), timeout=60)
    assert back['sha1sum'] == digest and (tmp_path / 'back.bin').read_bytes() == payload


def test_stderr_is_prefixed(docker_client, docker_image, capfd):
    with docker(docker_client, docker_image) as tun:
        assert tun.call(write_stderr, 'first line\nsecond line\n')
        deadline = time.monotonic() + 5
        seen = ''
        while 'second line' not in seen and time.monotonic() < deadline:
            gevent.sleep(0.05)
            seen += capfd.readouterr().err
    assert f'[{tun.host}] first line\n' in seen and f'[{tun.host}] second line\n' in seen


def test_keep_container_and_reconnect(docker_client, docker_image):
    tun = docker(docker_client, docker_image, rm=False)
    first = tun.call(os.getpid)
    tun.close()
    [container] = docker_client.containers.list(all=True, filters={'name': tun.host})
    assert container.status == 'exited' and container.attrs['State']['ExitCode'] == 0
    assert tun.call(os.getpid) == first  # the same container, started again: pid 1 again
    tun.close()
    assert len(ours(docker_client)) == 1


def test_docker_host_is_honoured(docker_daemon, docker_image, monkeypatch):
    monkeypatch.setenv('DOCKER_HOST', docker_daemon.base_url)
    with Docker(name(), docker_image, network_mode='none') as tun:
        assert tun.call(python_version)


def test_call_timeout_kills_the_container(docker_client, docker_image):
    tun = docker(docker_client, docker_image)
    try:
        started = time.monotonic()
        with pytest.raises(errors.CallTimeout):
            tun.call(time.sleep, 60, timeout=0.5)
        assert time.monotonic() - started < FAST
        assert gone(docker_client, tun.host, timeout=10)
        assert tun.call(python_version)  # a new container under the same name
    finally:
        tun.close()
    assert gone(docker_client, tun.host)


def test_sdk_calls_run_off_the_hub(docker_client, docker_image, running, monkeypatch):
    """Docker SDK calls are blocking HTTP: they run in gevent's thread pool, not the hub."""
    where = {}
    api = docker_client.api
    for method in ('create_container', 'attach_socket', 'start', 'wait', 'remove_container',
                   'exec_create', 'exec_start', 'exec_inspect'):
        def recording(*args, _method=method, _real=getattr(api, method), **kwargs):
            where.setdefault(_method, set()).add(threading.get_ident())
            return _real(*args, **kwargs)
        monkeypatch.setattr(api, method, recording)
    beats = []

    def heartbeat():
        while True:
            beats.append(time.monotonic())
            gevent.sleep(0.005)

    beater = gevent.spawn(heartbeat)
    try:
        with docker(docker_client, docker_image) as tun:
            tun.call(time.time)
        with DockerExec(running, client=docker_client) as tun:
            tun.call(time.time)
    finally:
        beater.kill()
    assert set(where) == {'create_container', 'attach_socket', 'start', 'wait',
                          'remove_container', 'exec_create', 'exec_start', 'exec_inspect'}
    assert threading.get_ident() not in set().union(*where.values())
    gaps = [b - a for a, b in zip(beats, beats[1:])]
    assert len(beats) > 10 and max(gaps) < 0.5, max(gaps)


def test_no_fd_leaks(docker_client, docker_image):
    tun = docker(docker_client, docker_image)
    tun.call(time.time)
    tun.close()
    gevent.sleep(0.2)
    before = open_fds()
    for _ in range(3):
        tun.call(time.time)
        tun.close()
    deadline = time.monotonic() + 5
    while open_sockets(open_fds() - before - pooled_fds(docker_client)) \
            and time.monotonic() < deadline:
        gevent.sleep(0.05)
    assert open_sockets(open_fds() - before - pooled_fds(docker_client)) == {}


# --- DockerExec ----------------------------------------------------------------------

def test_exec_into_running_container(docker_client, docker_image, running):
    container = docker_client.containers.get(running)
    with DockerExec(running, client=docker_client) as tun:
        assert tun.host == running
        assert tun.call(python_version)
        pid = tun.call(os.getpid)
        assert pid != 1  # pid 1 is the container's own command
        assert tun.call(import_served)[0] == 42
    container.reload()
    assert container.status == 'running'  # left as it was
    top = container.top()
    assert not any('zlib.decompress' in ' '.join(p) for p in top['Processes'])


def test_exec_missing_or_stopped_container(docker_client, docker_image, running):
    with pytest.raises(errors.DockerError, match='no container'):
        DockerExec(name('-missing'), client=docker_client).connect()
    docker_client.containers.get(running).kill()
    with pytest.raises(errors.DockerError, match='not running'):
        DockerExec(running, client=docker_client).connect()


def test_exec_interpreter_not_found(docker_client, docker_image, running):
    tun = DockerExec(running, client=docker_client, python='/nonexistent/python3')
    started = time.monotonic()
    with pytest.raises(errors.InterpreterNotFound, match='/nonexistent/python3'):
        tun.connect()
    assert time.monotonic() - started < FAST


# --- Docker failures -----------------------------------------------------------------

def timed_connect(tun, error, match=None):
    started = time.monotonic()
    with pytest.raises(error, match=match) as info:
        tun.connect()
    elapsed = time.monotonic() - started
    assert info.value.host == tun.host and not tun.connected
    assert elapsed < FAST
    assert type(info.value).__module__ == 'chopsticks.errors'
    return info.value


def test_engine_unreachable(docker_image, tmp_path, monkeypatch):
    import docker as docker_sdk
    nowhere = f'unix://{tmp_path}/no-such-docker.sock'
    client = docker_sdk.DockerClient(base_url=nowhere, version='1.41')
    exc = timed_connect(Docker(name(), docker_image, client=client), errors.DockerError,
                        'no Docker engine reachable')
    assert str(tmp_path) in str(exc)
    # Through DOCKER_HOST and docker.from_env(), which asks for the API version first.
    monkeypatch.setenv('DOCKER_HOST', nowhere)
    timed_connect(Docker(name(), docker_image), errors.DockerError, 'no Docker engine reachable')
    timed_connect(DockerExec(name()), errors.DockerError, 'no Docker engine reachable')


def test_engine_that_never_answers(docker_image, tmp_path):
    """A hung engine costs connect_timeout, not the SDK's own 60 s timeout."""
    import docker as docker_sdk
    path = str(tmp_path / 'silent.sock')
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)  # never accepted: requests wait in the backlog
    try:
        client = docker_sdk.DockerClient(base_url=f'unix://{path}', version='1.41', timeout=3)
        tun = Docker(name(), docker_image, client=client, connect_timeout=1.0)
        before = open_fds()
        started = time.monotonic()
        with pytest.raises(errors.ConnectTimeout, match='did not start the agent within 1s'):
            tun.connect()
        assert 0.9 < time.monotonic() - started < FAST
        # The abandoned request ends on the SDK's timeout; nothing is left behind.
        deadline = time.monotonic() + 10
        while open_sockets(open_fds() - before) and time.monotonic() < deadline:
            gevent.sleep(0.1)
        assert open_sockets(open_fds() - before) == {}
    finally:
        listener.close()


def test_image_missing(docker_client):
    exc = timed_connect(Docker(name(), 'chopsticks-no-such-image:1', client=docker_client),
                        errors.DockerError, 'chopsticks-no-such-image:1')
    assert 'never pulls' in str(exc) and 'docker pull' in str(exc)
    assert not ours(docker_client)


def test_container_exits_early(docker_client, docker_image):
    tun = docker(docker_client, docker_image, python='/usr/bin/false')
    exc = timed_connect(tun, errors.DockerError, 'exited with status 1')
    assert tun.host in str(exc)
    assert gone(docker_client, tun.host)
    # The last lines it printed are in the message: here sh refusing python's options.
    tun = docker(docker_client, docker_image, python='/bin/sh')
    exc = timed_connect(tun, errors.DockerError, 'exited with status 2')
    assert 'Illegal option' in str(exc) or 'illegal option' in str(exc)
    assert gone(docker_client, tun.host)


def test_interpreter_not_found(docker_client, docker_image):
    tun = docker(docker_client, docker_image, python='/nonexistent/python3')
    timed_connect(tun, errors.InterpreterNotFound, '/nonexistent/python3')
    assert gone(docker_client, tun.host)


def test_name_already_taken(docker_client, docker_image, running):
    tun = Docker(running, docker_image, client=docker_client, network_mode='none')
    timed_connect(tun, errors.DockerError, 'already exists')
    assert docker_client.containers.get(running).status == 'running'  # not touched


# --- groups and gevent patching ------------------------------------------------------

def test_group_mixing_transports(ssh_fleet, docker_client, docker_image, running):
    from chopsticks.transports.paramiko import ParamikoTunnel
    from chopsticks.tunnel import SSHTunnel
    common = dict(user=ssh_fleet.user, port=ssh_fleet.port,
                  identity_file=ssh_fleet.identity_file, known_hosts=ssh_fleet.known_hosts,
                  ssh_options={'KexAlgorithms': 'curve25519-sha256'})
    tunnels = [ParamikoTunnel(ssh_fleet.hosts[0], **common),
               SSHTunnel(ssh_fleet.hosts[1], **common),
               docker(docker_client, docker_image), docker(docker_client, docker_image),
               DockerExec(running, client=docker_client), Local('local')]
    group = Group(tunnels, concurrency=10)
    try:
        versions = group.call(python_version)
        served = group.call(import_served)
    finally:
        group.close()
    assert set(versions) == {t.host for t in tunnels}
    assert not versions.failed and not served.failed, versions.summary()
    assert {v[0] for v in served.values()} == {42}
    for tun in tunnels[2:4]:
        assert gone(docker_client, tun.host)


PATCHED_SCRIPT = '''
from gevent import monkey
monkey.patch_all()
import json, os, sys, time
sys.path.insert(0, {root!r})
import docker
from chopsticks.group import Group
from chopsticks.transports.docker import Docker
client = docker.DockerClient(base_url={url!r})
tunnels = [Docker({prefix!r} + str(i), {image!r}, client=client, network_mode='none')
           for i in range(2)]
result = Group(tunnels).call(os.getpid)
Group(tunnels).close()
left = client.api.containers(all=True, filters={{'name': {prefix!r}}})
print(json.dumps({{'ok': sorted(result.succeeded), 'failed': sorted(result.failed),
                   'left': len(left)}}))
'''


def test_monkey_patched_program(docker_daemon, docker_image, tmp_path):
    script = tmp_path / 'patched.py'
    prefix = name('-patched-')
    script.write_text(PATCHED_SCRIPT.format(root=ROOT, url=docker_daemon.base_url,
                                            image=docker_image, prefix=prefix))
    out = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {'ok': [prefix + '0', prefix + '1'], 'failed': [], 'left': 0}
