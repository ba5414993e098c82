"""Smoke tests of the test infrastructure itself (tests/fleet), on real processes."""

import glob
import os
import shlex
import subprocess
import time

import pytest

from tests.fleet import (
    SSHFleet,
    TEST_USER,
    build_python_image,
    fleet_addresses,
    free_port,
    procs,
    silent_listener,
)
# The root conftest loads this too; the plugin manager loads a plugin once.
pytest_plugins = ["tests.fleet.pytest_plugin"]

PY = "/usr/bin/python3"


def ssh(fleet, host, *command, extra=(), timeout=30):
    """Run COMMAND on HOST: one argument is a shell string, several are quoted."""
    remote = command[0] if len(command) == 1 else shlex.join(command)
    argv = ["ssh", "-F", fleet.ssh_config] + list(extra) + [host, remote]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


def all_gone(pids):
    return not [p for p in pids if procs.pid_alive(p)]


# --- sshd fleet --------------------------------------------------------------------

def test_addresses():
    assert fleet_addresses(3) == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
    many = fleet_addresses(1000)
    assert len(set(many)) == 1000
    assert many[253] == "127.0.1.254" and many[254] == "127.0.2.1"
    assert not [a for a in many if a.endswith((".0", ".255"))]


def test_fleet_layout(ssh_fleet):
    f = ssh_fleet
    assert len(f.hosts) == 20 and f.hosts[0] == "127.0.1.1" and f.hosts[-1] == "127.0.1.20"
    assert len(f.pids) == 2 and all_gone([]) and not all_gone(f.pids)
    assert f.pid_for("127.0.1.16") == f.pids[0]
    assert f.pid_for("127.0.1.17") == f.pids[1]
    assert f.user == TEST_USER
    with open(f.known_hosts) as kh:
        lines = kh.read().splitlines()
    assert len(lines) == 20
    assert lines[4].startswith("[127.0.1.5]:%d ssh-ed25519 " % f.port)
    with open(f.ssh_config) as c:
        config = c.read()
    assert "Host 127.*" in config
    for k in ("StrictHostKeyChecking yes", "KexAlgorithms curve25519-sha256",
              "BatchMode yes", "ControlMaster no", "Port %d" % f.port):
        assert k in config
    assert f.ssh_options["StrictHostKeyChecking"] == "yes"
    assert os.path.exists(f.identity_file)


@pytest.mark.parametrize("index", [0, 7, 15, 16, 19])
def test_ssh_python_on_host(ssh_fleet, index):
    """Hosts on both sshd processes (index >= 16 is served by the second one)."""
    host = ssh_fleet.hosts[index]
    r = ssh(ssh_fleet, host, PY, "-c", "print(1)")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"1\n"


def test_login_shell_is_lean(ssh_fleet):
    r = ssh(ssh_fleet, ssh_fleet.hosts[3],
            'echo "$0 $(id -u) $HOME"; command -v pyenv || echo no-pyenv')
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["sh", "0", "/root", "no-pyenv"]


def test_ssh_options_without_config_file(ssh_fleet):
    argv = (["ssh", "-F", "/dev/null"] + ssh_fleet.ssh_option_args()
            + [ssh_fleet.hosts[17], PY, "-c", "'print(2)'"])
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"2\n"


def test_pyenv_interpreter_reachable(ssh_fleet):
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python")))
    if not found:
        pytest.skip("no ~/.pyenv/versions/3.*/bin/python on this machine")
    r = ssh(ssh_fleet, ssh_fleet.hosts[1], found[0], "-c",
            "import sys; print(sys.version_info[0])")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"3\n"


def test_strict_host_key_checking(ssh_fleet, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    r = ssh(ssh_fleet, ssh_fleet.hosts[2], "true",
            extra=["-o", "UserKnownHostsFile=%s" % empty])
    assert r.returncode == 255
    assert b"Host key verification failed" in r.stderr

    # A different key recorded for the host: refused as well.
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    wrong = tmp_path / "wrong_known_hosts"
    key = " ".join(open(str(other) + ".pub").read().split()[:2])
    wrong.write_text("[%s]:%d %s\n" % (ssh_fleet.hosts[2], ssh_fleet.port, key))
    r = ssh(ssh_fleet, ssh_fleet.hosts[2], "true",
            extra=["-o", "UserKnownHostsFile=%s" % wrong, "-o", "LogLevel=ERROR"])
    assert r.returncode == 255
    assert b"Host key verification failed" in r.stderr


def test_ssh_timing(ssh_fleet):
    """One `ssh host python3 -c pass` is well under a second (typically ~60 ms)."""
    best = None
    for _ in range(3):
        t = time.perf_counter()
        r = ssh(ssh_fleet, ssh_fleet.hosts[5], PY, "-c", "pass")
        dt = time.perf_counter() - t
        assert r.returncode == 0, r.stderr
        best = dt if best is None else min(best, dt)
    print("ssh %s %s -c pass: %.0f ms" % (ssh_fleet.hosts[5], PY, best * 1000))
    assert best < 1.0


def test_teardown_leaves_no_sshd(tmp_path):
    fleet = SSHFleet(20, tmp_path / "fleet")
    with fleet:
        listeners = list(fleet.pids)
        assert len(listeners) == 2
        # A live session on the second sshd: its per-connection sshd children
        # must go too.
        client = subprocess.Popen(
            fleet.ssh_argv(fleet.hosts[18], "sleep", "60"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert procs.wait_until(
            lambda: any(_cmdline(p).startswith(b"sleep") for p in procs.descendants(listeners)),
            10), "the remote 'sleep 60' did not appear under the sshd"
        everything = listeners + procs.descendants(listeners)
    assert all_gone(everything), [p for p in everything if procs.pid_alive(p)]
    assert client.wait(timeout=15) == 255  # connection closed by the server side
    fleet.stop()  # idempotent


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


def test_thousand_hosts(tmp_path):
    t = time.perf_counter()
    with SSHFleet(1000, tmp_path / "fleet", first_subnet=11) as fleet:
        started = time.perf_counter() - t
        pids = list(fleet.pids)
        assert len(pids) == 63
        assert fleet.hosts[-1] == "127.0.14.238"
        for host in (fleet.hosts[0], fleet.hosts[500], fleet.hosts[-1]):
            r = ssh(fleet, host, PY, "-c", "print(3)")
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"3\n"
    assert all_gone(pids)
    print("1000-host fleet started in %.2f s" % started)


def test_fixed_port_and_clear_error(tmp_path):
    port = free_port()
    with SSHFleet(2, tmp_path / "a", port=port, first_subnet=21) as fleet:
        assert fleet.port == port
        # The same addresses and port again: the error says why.
        with pytest.raises(Exception) as info:
            SSHFleet(2, tmp_path / "b", port=port, first_subnet=21, start_timeout=5)
        assert "Address already in use" in str(info.value)
        assert ssh(fleet, fleet.hosts[1], "true").returncode == 0


def test_silent_listener(ssh_fleet):
    with silent_listener() as (host, port):
        assert host == "127.0.0.9"
        t = time.perf_counter()
        r = ssh(ssh_fleet, host, "true", extra=["-p", str(port), "-o", "ConnectTimeout=1"])
        dt = time.perf_counter() - t
    assert r.returncode == 255
    assert b"timed out" in r.stderr
    assert dt < 10


def test_free_port():
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.1.1", port))


# --- docker --------------------------------------------------------------------------

@pytest.mark.docker
def test_dockerd_python_image_and_teardown(tmp_path):
    from tests.fleet.pytest_plugin import start_dockerd_or_skip

    d = start_dockerd_or_skip(tmp_path / "dockerd")
    with d:
        print("dockerd storage driver: %s" % d.storage_driver)
        assert d.env == {"DOCKER_HOST": d.base_url}
        client = d.client()
        tag = build_python_image(d)
        out = client.containers.run(
            tag, [PY, "-c", "import zlib, hashlib, json, threading, socket; print(1)"],
            network_mode="none", remove=True)
        assert out == b"1\n"
        # A running container at stop time: its shim and process must go too.
        c = client.containers.run(tag, ["sleep", "600"], network_mode="none", detach=True)
        assert procs.wait_until(lambda: len(d.pids) >= 4, 10), d.pids
        pids = d.pids
        assert c.id
    assert all_gone(pids), [(p, _cmdline(p)) for p in pids if procs.pid_alive(p)]
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()


@pytest.mark.docker
def test_docker_fixtures(docker_daemon, docker_client, docker_image):
    out = docker_client.containers.run(
        docker_image, ["/bin/sh", "-c", "echo $HOME; /usr/bin/python3 -c 'print(2)'"],
        network_mode="none", remove=True)
    assert out == b"/root\n2\n"
    exec_target = docker_client.containers.run(
        docker_image, ["sleep", "600"], network_mode="none", detach=True)
    try:
        res = exec_target.exec_run([PY, "-c", "import sys; print(sys.version_info[:2])"])
        assert res.exit_code == 0 and res.output == b"(3, 11)\n"
    finally:
        exec_target.remove(force=True)
