"""A fleet of real OpenSSH servers on loopback addresses, for tests.

    with SSHFleet(20, workdir) as fleet:
        subprocess.run(["ssh", "-F", fleet.ssh_config, fleet.hosts[0],
                        "/usr/bin/python3", "-c", "print(1)"])

One host = one loopback address (127.0.1.1, 127.0.1.2, ... skipping .0 and
.255), all on one TCP port.  sshd accepts at most 16 ListenAddress lines, so
the fleet runs ceil(n/16) sshd processes, each serving 16 addresses.

Choices that keep one connection cheap: ``ssh HOST /usr/bin/python3 -c pass``
takes ~60-70 ms here, against ~260 ms with root's login shell and without
quick ACKs:

* Login account.  sshd runs the account's shell from /etc/passwd with ``-c``
  and bash started by sshd sources ~/.bashrc, which on these machines runs
  ``pyenv init`` (>100 ms per command).  The fleet therefore logs in as
  ``chopsticks-test``: an alias of root (uid 0, gid 0, home /root, so
  ``~/.pyenv/versions/*/bin/python`` is there) whose shell is /bin/sh (dash,
  which reads no start-up file for ``sh -c``).  The account is created on
  first use with useradd (password field ``*``: no password, not locked).
  ``SSHFleet(user="root")`` works too, but then pays for ~/.bashrc.
  (To remove the account, delete its line with vipw/vipw -s: never
  ``userdel -r chopsticks-test``, its home is /root.)
* Key exchange curve25519-sha256 (the default post-quantum one costs ~100 ms
  of CPU per connection here); host and client keys are ed25519.
* Delayed ACKs.  sshd writes some replies in two small segments; Nagle plus
  the peer's 40 ms delayed ACK adds ~2 x 40 ms to every login on loopback.
  The fleet adds a route ``local 127.0.N.0/24 dev lo table local quickack 1``
  for each /24 it uses (no ``src``, so both ends of a connection use the
  host's own address and both get quick ACKs), and deletes the routes it
  added on stop.  Turn off with ``quickack=False`` or the environment
  variable CHOPSTICKS_TEST_QUICKACK=0.

Processes are started with start_new_session and stopped by PID: the
listeners and all their descendants (per-connection sshd, sessions, remote
commands), found through /proc and frozen with SIGSTOP first so none can
escape, then SIGTERM and SIGKILL after a deadline.  Never by name.
"""

import os
import shutil
import socket
import subprocess
import threading
import time
import contextlib

from . import procs

__all__ = [
    "SSHFleet",
    "SSHFleetError",
    "TEST_USER",
    "fleet_addresses",
    "free_port",
    "silent_listener",
    "ensure_test_user",
]

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
TEST_USER = "chopsticks-test"
ADDRESSES_PER_SSHD = 16  # sshd: "Too many listen sockets" above this

CLIENT_KEX = "curve25519-sha256"
# The server also accepts other classical kex so clients that do not read our
# config (paramiko, asyncssh) still connect; only the slow PQ hybrid is left out.
SERVER_KEX = ",".join([
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group14-sha256",
    "diffie-hellman-group16-sha512",
])


class SSHFleetError(RuntimeError):
    pass


def free_port(host="0.0.0.0"):
    """A TCP port that nothing listens on right now (on any address by default)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def fleet_addresses(n, first_subnet=1):
    """n loopback addresses: 127.0.<first_subnet>.1 .. .254, then the next /24."""
    if n < 0:
        raise ValueError("n must be >= 0")
    out = []
    for i in range(n):
        third = first_subnet + i // 254
        if third > 255:
            raise ValueError("too many hosts for 127.0.%d.0/24 upwards" % first_subnet)
        out.append("127.0.%d.%d" % (third, 1 + i % 254))
    return out


@contextlib.contextmanager
def silent_listener(addr="127.0.0.9", port=0):
    """A TCP server that accepts connections and never sends a byte.

    Yields (host, port).  Accepted connections are held open until the
    context exits, so a client waiting for an SSH banner hangs until its own
    timeout.
    """
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(512)
    srv.settimeout(0.05)
    held = []
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            held.append(conn)

    t = threading.Thread(target=loop, name="silent-listener", daemon=True)
    t.start()
    try:
        yield srv.getsockname()[0], srv.getsockname()[1]
    finally:
        stop.set()
        t.join(5)
        srv.close()
        for c in held:
            try:
                c.close()
            except OSError:
                pass


_user_lock = threading.Lock()


def ensure_test_user(name=TEST_USER):
    """Create NAME as a uid-0 alias of root with /bin/sh and home /root.

    Idempotent.  Needs root.  The password field is '*' (no password login,
    but not 'locked': sshd with UsePAM no refuses even keys for a '!' field).
    """
    import pwd

    with _user_lock:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            pw = None
        if pw is None:
            _run(["useradd", "--non-unique", "--uid", "0", "--gid", "0",
                  "--no-create-home", "--home-dir", "/root", "--shell", "/bin/sh",
                  "--comment", "chopsticks test fleet (root alias, lean shell)", name])
        elif (pw.pw_uid, pw.pw_dir, pw.pw_shell) != (0, "/root", "/bin/sh"):
            _run(["usermod", "--non-unique", "--uid", "0", "--gid", "0",
                  "--home", "/root", "--shell", "/bin/sh", name])
        if _shadow_locked(name):
            _run(["usermod", "--password", "*", name])


def _shadow_locked(name):
    try:
        with open("/etc/shadow") as f:
            for line in f:
                parts = line.split(":")
                if parts[0] == name:
                    return parts[1].startswith("!")
    except OSError:
        pass
    return False


def _run(argv, **kw):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, **kw)
    if p.returncode != 0:
        raise SSHFleetError("%s failed (exit %d): %s" % (
            " ".join(argv), p.returncode, p.stdout.decode("utf-8", "replace").strip()))
    return p.stdout.decode("utf-8", "replace")


# --- quick-ACK routes, shared by all fleets of this process ------------------

_route_lock = threading.Lock()
_route_refs: dict = {}  # prefix -> [refcount, added_by_us]


def _quickack_default():
    return os.environ.get("CHOPSTICKS_TEST_QUICKACK", "1").strip().lower() not in (
        "0", "no", "false", "off", "")


def _route_acquire(prefix):
    ip = shutil.which("ip")
    with _route_lock:
        ref = _route_refs.get(prefix)
        if ref is not None:
            ref[0] += 1
            return True
        added = False
        if ip:
            p = subprocess.run(
                [ip, "route", "add", "local", prefix, "dev", "lo", "table", "local",
                 "proto", "static", "scope", "host", "quickack", "1"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE)
            added = p.returncode == 0
        _route_refs[prefix] = [1, added]
        return added


def _route_release(prefix):
    ip = shutil.which("ip")
    with _route_lock:
        ref = _route_refs.get(prefix)
        if ref is None:
            return
        ref[0] -= 1
        if ref[0] > 0:
            return
        del _route_refs[prefix]
        if ref[1] and ip:
            subprocess.run(
                [ip, "route", "del", "local", prefix, "dev", "lo", "table", "local",
                 "proto", "static", "scope", "host"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)


# --- the fleet ---------------------------------------------------------------

class SSHFleet:
    """n "hosts" served by ceil(n/16) real sshd processes on one port.

    Attributes: hosts, port, user, identity_file, known_hosts, ssh_config,
    ssh_options, host_public_key, pids, workdir.
    """

    def __init__(self, n_hosts, workdir, port=None, user=TEST_USER,
                 first_subnet=1, quickack=None, start_timeout=15.0):
        if n_hosts < 1:
            raise ValueError("n_hosts must be >= 1")
        self.workdir = os.path.abspath(str(workdir))
        self.hosts = fleet_addresses(n_hosts, first_subnet)
        self.user = user
        self.port = port
        self._fixed_port = port is not None
        self.quickack = _quickack_default() if quickack is None else bool(quickack)
        self.start_timeout = start_timeout
        self._procs = []  # [(Popen, [addresses], logpath)]
        self._routes = []
        self._stopped = False
        self.identity_file = os.path.join(self.workdir, "client_ed25519")
        self.host_key = os.path.join(self.workdir, "host_ed25519")
        self.authorized_keys = os.path.join(self.workdir, "authorized_keys")
        self.known_hosts = os.path.join(self.workdir, "known_hosts")
        self.ssh_config = os.path.join(self.workdir, "ssh_config")
        self.host_public_key = None
        self.ssh_options = {}
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    # context manager
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return "<SSHFleet %d hosts %s..%s port %s pids %s>" % (
            len(self.hosts), self.hosts[0], self.hosts[-1], self.port, self.pids)

    @property
    def pids(self):
        """PIDs of the listening sshd processes (one per 16 hosts)."""
        return [p.pid for p, _, _ in self._procs]

    def pid_for(self, host):
        """PID of the sshd process that listens on HOST."""
        for p, addrs, _ in self._procs:
            if host in addrs:
                return p.pid
        raise KeyError(host)

    def ssh_option_args(self):
        """['-o', 'Key=value', ...] equivalent to the ssh_config file."""
        out = []
        for k, v in self.ssh_options.items():
            out += ["-o", "%s=%s" % (k, v)]
        return out

    def ssh_argv(self, host, *command):
        """argv for running COMMAND on HOST with the system ssh client."""
        return ["ssh", "-F", self.ssh_config, host] + list(command)

    # --- start -----------------------------------------------------------------

    def _start(self):
        os.makedirs(self.workdir, exist_ok=True)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        if not os.path.exists(SSHD):
            raise SSHFleetError("sshd not found (install openssh-server: bash tests/setup.sh)")
        if self.user != "root":
            ensure_test_user(self.user)
        self._make_keys()
        if self.quickack:
            for prefix in sorted({h.rsplit(".", 1)[0] + ".0/24" for h in self.hosts}):
                _route_acquire(prefix)
                self._routes.append(prefix)
        attempts = 1 if self._fixed_port else 5
        last = None
        for _ in range(attempts):
            if not self._fixed_port:
                self.port = free_port()
            try:
                self._launch_all()
                break
            except SSHFleetError as e:
                last = e
                self._kill_all()
                if self._fixed_port or "Address already in use" not in str(e):
                    raise
        else:
            raise last
        self._write_client_files()

    def _make_keys(self):
        for path in (self.host_key, self.identity_file):
            if not os.path.exists(path):
                _run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C",
                      "chopsticks-test-fleet", "-f", path])
        with open(self.host_key + ".pub") as f:
            self.host_public_key = " ".join(f.read().split()[:2])
        with open(self.identity_file + ".pub") as f:
            client_pub = f.read().strip()
        with open(self.authorized_keys, "w") as f:
            f.write(client_pub + "\n")

    def _sshd_config(self, index, addrs):
        pidfile = os.path.join(self.workdir, "sshd.%d.pid" % index)
        lines = [
            "# generated by tests/fleet/sshd.py for a test fleet",
            "Port %d" % self.port,
            "AddressFamily inet",
        ] + ["ListenAddress %s" % a for a in addrs] + [
            "HostKey %s" % self.host_key,
            "PidFile %s" % pidfile,
            "AuthorizedKeysFile %s" % self.authorized_keys,
            "AuthenticationMethods publickey",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "PermitUserRC no",
            "PermitUserEnvironment no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "AllowAgentForwarding no",
            "AllowTcpForwarding yes",
            "AllowStreamLocalForwarding yes",
            "KexAlgorithms %s" % SERVER_KEX,
            "MaxStartups 2000:30:4000",
            "MaxSessions 1000",
            "MaxAuthTries 10",
            "LoginGraceTime 60",
            "TCPKeepAlive yes",
            "LogLevel ERROR",
            "Subsystem sftp internal-sftp",
        ]
        path = os.path.join(self.workdir, "sshd_config.%d" % index)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def _launch_all(self):
        self._procs = []
        chunks = [self.hosts[i:i + ADDRESSES_PER_SSHD]
                  for i in range(0, len(self.hosts), ADDRESSES_PER_SSHD)]
        for index, addrs in enumerate(chunks):
            cfg = self._sshd_config(index, addrs)
            log = os.path.join(self.workdir, "sshd.%d.log" % index)
            with open(log, "wb") as logf:
                p = subprocess.Popen(
                    [SSHD, "-D", "-e", "-f", cfg],
                    stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                    start_new_session=True, close_fds=True)
            self._procs.append((p, addrs, log))
        self._wait_listening()
        self._probe_banners()

    def _wait_listening(self):
        deadline = time.monotonic() + self.start_timeout
        pending = list(self._procs)
        while pending:
            still = []
            for p, addrs, log in pending:
                if p.poll() is not None:
                    raise SSHFleetError(
                        "sshd (pid %d, %s..%s port %d) exited with %s before listening:\n%s"
                        % (p.pid, addrs[0], addrs[-1], self.port, p.returncode,
                           procs.tail(log)))
                have = procs.listening_tcp([p.pid])
                if not all((a, self.port) in have for a in addrs):
                    if os.path.getsize(log) and "Address already in use" in procs.tail(log):
                        raise SSHFleetError(
                            "sshd (pid %d) could not bind port %d: Address already in use:\n%s"
                            % (p.pid, self.port, procs.tail(log)))
                    still.append((p, addrs, log))
            pending = still
            if not pending:
                break
            if time.monotonic() > deadline:
                p, addrs, log = pending[0]
                have = procs.listening_tcp([p.pid])
                missing = [a for a in addrs if (a, self.port) not in have]
                raise SSHFleetError(
                    "sshd (pid %d) not listening on %s port %d after %.0f s; log:\n%s"
                    % (p.pid, ", ".join(missing), self.port, self.start_timeout,
                       procs.tail(log)))
            time.sleep(0.01)

    def _probe_banners(self):
        """One real connection per sshd process: it must send an SSH banner."""
        for p, addrs, log in self._procs:
            try:
                with socket.create_connection((addrs[0], self.port), timeout=10) as s:
                    data = b""
                    while b"\n" not in data and len(data) < 1024:
                        chunk = s.recv(256)
                        if not chunk:
                            break
                        data += chunk
                    if not data.startswith(b"SSH-2.0-"):
                        raise SSHFleetError("no SSH banner from %s:%d (got %r); log:\n%s"
                                            % (addrs[0], self.port, data, procs.tail(log)))
                    # Say who we are and leave: sshd logs that at INFO only.
                    s.sendall(b"SSH-2.0-chopsticks_fleet_probe\r\n")
            except OSError as e:
                raise SSHFleetError("cannot connect to sshd at %s:%d: %s; log:\n%s"
                                    % (addrs[0], self.port, e, procs.tail(log)))

    def _known_host_name(self, addr):
        return addr if self.port == 22 else "[%s]:%d" % (addr, self.port)

    def _write_client_files(self):
        with open(self.known_hosts, "w") as f:
            for a in self.hosts:
                f.write("%s %s\n" % (self._known_host_name(a), self.host_public_key))
        self.ssh_options = {
            "Port": str(self.port),
            "User": self.user,
            "IdentityFile": self.identity_file,
            "IdentitiesOnly": "yes",
            "UserKnownHostsFile": self.known_hosts,
            "GlobalKnownHostsFile": "/dev/null",
            "StrictHostKeyChecking": "yes",
            "CheckHostIP": "no",
            "UpdateHostKeys": "no",
            "HostKeyAlgorithms": "ssh-ed25519",
            "KexAlgorithms": CLIENT_KEX,
            "BatchMode": "yes",
            "PasswordAuthentication": "no",
            "ControlMaster": "no",
            "AddressFamily": "inet",
            "ConnectTimeout": "15",
            "LogLevel": "ERROR",
        }
        lines = ["# generated by tests/fleet/sshd.py", "Host 127.*"]
        lines += ["    %s %s" % kv for kv in self.ssh_options.items()]
        with open(self.ssh_config, "w") as f:
            f.write("\n".join(lines) + "\n")

    # --- stop ------------------------------------------------------------------

    def _kill_all(self, timeout=5.0):
        listeners = [p for p, _, _ in self._procs]
        if not listeners:
            return {}
        left = procs.stop_tree([p.pid for p in listeners], timeout=timeout, popens=listeners)
        for p in listeners:
            try:
                p.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        return left

    def stop(self, timeout=5.0):
        """Stop every sshd of the fleet and all their descendants.  Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        left = self._kill_all(timeout)
        for prefix in self._routes:
            _route_release(prefix)
        self._routes = []
        if left:
            raise SSHFleetError("processes survived SIGKILL: %s" % sorted(left))
