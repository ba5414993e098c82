"""Session-scoped pytest fixtures for the real sshd fleet and dockerd.

Load from the root conftest.py:

    pytest_plugins = ["tests.fleet.pytest_plugin"]

Environment:
    CHOPSTICKS_TEST_REQUIRE_DOCKER=1   fail instead of skip when dockerd cannot run
    CHOPSTICKS_TEST_DOCKER_STORAGE_DRIVER=vfs   storage driver(s) to try, in order
    CHOPSTICKS_TEST_QUICKACK=0         do not add quick-ACK loopback routes
"""

import os

import pytest

from .dockerd import Dockerd, DockerdUnavailable, build_python_image, DEFAULT_IMAGE_TAG
from .sshd import SSHFleet

SSH_FLEET_SIZE = 20


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "docker: needs the private dockerd (skipped where dockerd cannot run)")
    config.addinivalue_line("markers", "ssh: uses the real sshd fleet")


@pytest.fixture(scope="session")
def ssh_fleet(tmp_path_factory):
    """SSHFleet of 20 hosts: 127.0.1.1 .. 127.0.1.20 served by 2 sshd processes."""
    fleet = SSHFleet(SSH_FLEET_SIZE, tmp_path_factory.mktemp("ssh_fleet"))
    try:
        yield fleet
    finally:
        fleet.stop()


def start_dockerd_or_skip(workdir):
    """Dockerd(workdir), or pytest.skip with the reason if dockerd cannot run here."""
    try:
        return Dockerd(workdir)
    except DockerdUnavailable as e:
        msg = "dockerd cannot run in this environment: %s" % e
        if len(msg) > 3000:
            msg = msg[:3000] + " ..."
        if os.environ.get("CHOPSTICKS_TEST_REQUIRE_DOCKER", "") not in ("", "0"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def docker_daemon(tmp_path_factory):
    """A private dockerd (own data root and socket, no network set-up)."""
    d = start_dockerd_or_skip(tmp_path_factory.mktemp("dockerd"))
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="session")
def docker_client(docker_daemon):
    """docker.DockerClient for docker_daemon."""
    return docker_daemon.client()


@pytest.fixture(scope="session")
def docker_image(docker_daemon, docker_client):
    """Tag of an image holding the host's /usr/bin/python3 (Debian 3.11) and /bin/sh.

    Run containers from it with network_mode="none".
    """
    return build_python_image(docker_client, DEFAULT_IMAGE_TAG)
