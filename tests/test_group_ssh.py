"""Group behaviour over real SSH: a silent host and a dead host beside healthy ones."""
from __future__ import annotations

import time

from chopsticks import errors
from chopsticks.group import Group
from chopsticks.transports.ssh import SSHTunnel
from tests.fleet.sshd import free_port, silent_listener
from tests.servedpkg.remote import sleep_then


def fleet_options(fleet, **extra):
    options = dict(user=fleet.user, port=fleet.port, identity_file=fleet.identity_file,
                   known_hosts=fleet.known_hosts,
                   ssh_options={'KexAlgorithms': 'curve25519-sha256', 'ControlMaster': 'no'})
    options.update(extra)
    return options


def test_silent_and_dead_hosts_do_not_delay_the_healthy(ssh_fleet):
    healthy = [SSHTunnel(h, **fleet_options(ssh_fleet)) for h in ssh_fleet.hosts[:6]]
    with silent_listener('127.0.0.9') as (addr, port):
        silent = SSHTunnel(addr, **fleet_options(ssh_fleet, port=port, connect_timeout=2))
        dead = SSHTunnel('127.0.0.10', **fleet_options(ssh_fleet, port=free_port('127.0.0.10'),
                                                        connect_timeout=2))
        group = Group(healthy + [silent, dead], concurrency=4)
        started = time.monotonic()
        try:
            result = group.call(sleep_then, 0, 'ok', timeout=10)
        finally:
            group.close()
        elapsed = time.monotonic() - started
    assert elapsed < 5, elapsed  # about connect_timeout, not a sum of waits
    assert [result[t.host] for t in healthy] == ['ok'] * 6
    assert isinstance(result[silent.host].exception, errors.ConnectTimeout)
    assert isinstance(result[dead.host].exception, errors.ConnectionRefused)
    summary = result.summary()
    assert summary.startswith('2/8 hosts failed')


def test_hung_calls_cost_max_timeout_not_the_sum(ssh_fleet):
    group = Group(ssh_fleet.hosts[:8], tunnel_class=SSHTunnel, **fleet_options(ssh_fleet))
    try:
        group.connect().raise_failures()
        started = time.monotonic()
        result = group.call(sleep_then, 60, 'never', timeout=1.5)
        elapsed = time.monotonic() - started
        assert elapsed < 3.5, elapsed
        assert all(isinstance(v.exception, errors.CallTimeout) for v in result.values())
        assert set(group.call(sleep_then, 0, 'back').values()) == {'back'}
    finally:
        group.close()
