"""Shared fixtures: the real sshd fleet and dockerd, and a leak check for every test."""
from __future__ import annotations

import os
import time

import pytest

pytest_plugins = ['tests.fleet.pytest_plugin']

#: Every agent's command line carries the stage-1 program.
AGENT_MARK = b'zlib.decompress(f.read('


def agent_pids() -> set[int]:
    """PIDs of agents started by this process (children whose argv has stage 1)."""
    me = os.getpid()
    found = set()
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat', 'rb') as f:
                ppid = int(f.read().rsplit(b')', 1)[1].split()[1])
            if ppid != me:
                continue
            with open(f'/proc/{entry}/cmdline', 'rb') as f:
                if AGENT_MARK in f.read():
                    found.add(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir('/proc/self/fd')}


@pytest.fixture(autouse=True)
def no_leaks(request):
    """Fail a test that leaves agent processes (or, for self-contained tests, fds) behind."""
    from chopsticks import _base  # noqa: F401 - imported before counting fds
    before_pids = agent_pids()
    before_fds = open_fds()
    yield
    if request.node.get_closest_marker('leaks_ok'):
        return
    deadline = time.monotonic() + 5
    import gevent
    while True:
        leaked = agent_pids() - before_pids
        if not leaked or time.monotonic() > deadline:
            break
        gevent.sleep(0.05)
    assert not leaked, f'agent processes left running: {sorted(leaked)}'
    session_fixtures = {'ssh_fleet', 'docker_daemon', 'docker_client', 'docker_image'}
    if session_fixtures & set(request.fixturenames):
        return
    while True:
        extra = open_fds() - before_fds
        if not extra or time.monotonic() > deadline:
            break
        gevent.sleep(0.05)
    details = {fd: os.readlink(f'/proc/self/fd/{fd}') for fd in extra
               if os.path.exists(f'/proc/self/fd/{fd}')}
    details = {fd: target for fd, target in details.items()
               if target.startswith(('socket:', 'pipe:', 'anon_inode:[pidfd]'))}
    assert not details, f'file descriptors left open: {details}'


def pytest_configure(config):
    config.addinivalue_line('markers', 'leaks_ok: skip the leak check (documented why)')
