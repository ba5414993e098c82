"""Scale: hundreds of real agents over Local and SSH from one controller process.

Marked ``slow`` (deselect with ``-m 'not slow'``); CI runs them.
"""
from __future__ import annotations

import gc
import os
import time

import gevent
import greenlet
import pytest

from chopsticks.group import Group
from chopsticks.transports.ssh import SSHTunnel
from chopsticks.tunnel import Local
from tests.fleet.sshd import SSHFleet
from tests.servedpkg.remote import agent_pid

pytestmark = pytest.mark.slow

N_LOCAL = 500
N_SSH = 200


def live_greenlets() -> int:
    """Live greenlets, less the hub threadpool's idle workers.

    Agents are spawned from gevent's threadpool (at most its size, 10 by
    default, shared by the process): those workers stay for the next spawn.
    """
    import gevent.threadpool
    workers = getattr(gevent.threadpool, '_WorkerGreenlet', ())
    gc.collect()
    return sum(1 for o in gc.get_objects()
               if isinstance(o, greenlet.greenlet) and not o.dead and o.parent is not None
               and not isinstance(o, workers))


def fd_count() -> int:
    return len(os.listdir('/proc/self/fd'))


def check_same_agents_and_clean_close(group: Group, warm_rounds: int = 3) -> None:
    gevent.sleep(0)  # the hub's own fds exist before counting
    fds_before, greenlets_before = fd_count(), live_greenlets()
    first = group.call(agent_pid)
    first.raise_failures()
    assert len(first) == len(group)
    assert len(set(first.values())) == len(group)  # one agent per host
    for _ in range(warm_rounds):
        again = group.call(agent_pid)
        again.raise_failures()
        assert dict(again) == dict(first), 'a warm call reached a different agent'
    group.close()
    assert not any(t.connected for t in group)
    deadline = time.monotonic() + 10
    while fd_count() > fds_before and time.monotonic() < deadline:
        gevent.sleep(0.05)
    assert fd_count() <= fds_before, 'file descriptors left open after close()'
    assert live_greenlets() <= greenlets_before, 'greenlets left after close()'
    for pid in first.values():
        assert not os.path.exists(f'/proc/{pid}') or _zombie(pid), f'agent {pid} still runs'


def _zombie(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'Z'
    except OSError:
        return True


def test_local_agents_at_scale():
    group = Group([Local(f'local{i}') for i in range(N_LOCAL)], concurrency=250)
    try:
        check_same_agents_and_clean_close(group)
    finally:
        group.close()


@pytest.fixture(scope='module')
def big_fleet(tmp_path_factory):
    fleet = SSHFleet(N_SSH, tmp_path_factory.mktemp('big_fleet'), first_subnet=20)
    try:
        yield fleet
    finally:
        fleet.stop()


def test_ssh_hosts_at_scale(big_fleet):
    assert len(set(big_fleet.hosts)) == N_SSH
    group = Group(big_fleet.hosts, concurrency=100, tunnel_class=SSHTunnel,
                  user=big_fleet.user, port=big_fleet.port,
                  identity_file=big_fleet.identity_file,
                  known_hosts=big_fleet.known_hosts, connect_timeout=30,
                  ssh_options={'KexAlgorithms': 'curve25519-sha256',
                               'ControlMaster': 'no'})
    try:
        check_same_agents_and_clean_close(group)
    finally:
        group.close()
