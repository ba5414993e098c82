"""Real test infrastructure for chopsticks: sshd fleets and a private dockerd.

Nothing here is a mock: the fixtures start real OpenSSH servers and a real
Docker daemon, and stop them by PID at the end.

    from tests.fleet import SSHFleet, silent_listener, free_port
    from tests.fleet import Dockerd, build_python_image

pytest fixtures (session scoped) live in tests.fleet.pytest_plugin; load them
from the root conftest with ``pytest_plugins = ["tests.fleet.pytest_plugin"]``:

    ssh_fleet      SSHFleet of 20 hosts (127.0.1.1 .. 127.0.1.20, 2 sshd)
    docker_daemon  Dockerd (tests using it skip if dockerd cannot run here)
    docker_client  docker.DockerClient for docker_daemon
    docker_image   tag of an image with the host's /usr/bin/python3

See sshd.py and dockerd.py for the details and the reasons behind them.
"""

from .sshd import (  # noqa: F401
    SSHFleet,
    SSHFleetError,
    TEST_USER,
    ensure_test_user,
    fleet_addresses,
    free_port,
    silent_listener,
)
from .dockerd import (  # noqa: F401
    DEFAULT_IMAGE_TAG,
    Dockerd,
    DockerdError,
    DockerdUnavailable,
    build_python_image,
    dockerd_unavailable_reason,
    python_rootfs_tarball,
)
from . import procs  # noqa: F401
