"""A private Docker daemon for tests, and a Python image built without a registry.

    with Dockerd(workdir) as d:
        client = d.client()
        tag = build_python_image(client)
        client.containers.run(tag, ["/usr/bin/python3", "-c", "print(1)"],
                              network_mode="none", remove=True)

Dockerd starts Debian's ``dockerd`` (package docker.io) with its own data root,
exec root, unix socket, pid file and an empty config file, without any network
set-up (``--bridge=none --iptables=false --ip6tables=false --ip-masq=false``):
containers must use ``network_mode="none"`` (or "host").  dockerd starts and
supervises its own containerd (``<exec-root>/containerd``); stop() stops
dockerd, that containerd, any containerd-shim of this daemon, and unmounts
whatever is left mounted under the daemon's directories.  Everything is
found by PID (children via /proc, shims by this daemon's own containerd
socket path on their command line), never by process name.

Storage driver: overlay2 is tried first, then vfs (much slower and bigger,
but works on any filesystem).  CHOPSTICKS_TEST_DOCKER_STORAGE_DRIVER=vfs (or a
comma separated list) overrides the order.

There is no registry: build_python_image() makes a tarball of the host's
/usr/bin/python3 with its standard library and the shared libraries it needs
(found with ldd), plus /bin/sh and a few coreutils, caches it under
~/.cache/chopsticks-test/ (keyed by the interpreter's version and file
stamps), and imports it with ``docker import``.
"""

import hashlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import time

from . import procs

__all__ = [
    "Dockerd",
    "DockerdError",
    "DockerdUnavailable",
    "dockerd_unavailable_reason",
    "build_python_image",
    "python_rootfs_tarball",
    "DEFAULT_IMAGE_TAG",
]

DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
DEFAULT_IMAGE_TAG = "chopsticks-python:test"
DEFAULT_DRIVERS = ("overlay2", "vfs")
_UNIX_PATH_MAX = 100  # sun_path is 108 bytes; containerd adds ".ttrpc" etc.


class DockerdError(RuntimeError):
    pass


class DockerdUnavailable(DockerdError):
    """dockerd cannot run in this environment at all (tests should skip)."""


def dockerd_unavailable_reason():
    """A reason why no dockerd can run here, or None if it is worth trying."""
    if not os.path.exists(DOCKERD):
        return "dockerd not installed (apt-get install docker.io; see tests/setup.sh)"
    if os.geteuid() != 0:
        return "dockerd needs root"
    try:
        import docker  # noqa: F401
    except ImportError:
        return "python package 'docker' not installed (pip install -e '.[docker]')"
    if not os.path.isdir("/sys/fs/cgroup"):
        return "no /sys/fs/cgroup: containers cannot run"
    return None


def _drivers_from_env():
    v = os.environ.get("CHOPSTICKS_TEST_DOCKER_STORAGE_DRIVER", "").strip()
    if not v:
        return DEFAULT_DRIVERS
    return tuple(d.strip() for d in v.split(",") if d.strip())


class Dockerd:
    """A dockerd of our own.  Attributes: base_url, env, socket, pid, pids,
    storage_driver, data_root, exec_root, log_path, workdir."""

    def __init__(self, workdir, storage_driver=None, start_timeout=30.0,
                 shutdown_timeout=3):
        self.workdir = os.path.abspath(str(workdir))
        os.makedirs(self.workdir, exist_ok=True)
        self.start_timeout = start_timeout
        self.shutdown_timeout = shutdown_timeout
        self.data_root = os.path.join(self.workdir, "data")
        # Unix socket paths must be short: keep sockets and exec root in a
        # short directory when the work directory is deep.
        if len(self.workdir) + len("/exec/containerd/containerd.sock.ttrpc") < _UNIX_PATH_MAX:
            self._run_dir = self.workdir
            self._own_run_dir = False
        else:
            self._run_dir = tempfile.mkdtemp(prefix="ckd-", dir="/tmp")
            self._own_run_dir = True
        self.exec_root = os.path.join(self._run_dir, "exec")
        self.socket = os.path.join(self._run_dir, "docker.sock")
        self.base_url = "unix://" + self.socket
        self.env = {"DOCKER_HOST": self.base_url}
        self.pidfile = os.path.join(self.workdir, "docker.pid")
        self.config_file = os.path.join(self.workdir, "daemon.json")
        self.log_path = None
        self.storage_driver = None
        self._popen = None
        self._clients = []
        self._stopped = False
        self._known = {}  # pid -> start time of everything we saw it start
        drivers = (storage_driver,) if storage_driver else _drivers_from_env()
        reason = dockerd_unavailable_reason()
        if reason:
            raise DockerdUnavailable(reason)
        errors = []
        try:
            for driver in drivers:
                try:
                    self._start(driver)
                    self.storage_driver = driver
                    break
                except DockerdError as e:
                    errors.append("%s: %s" % (driver, e))
                    self._stop_processes()
                    self._unmount_all()
                    shutil.rmtree(self.data_root, ignore_errors=True)
                    shutil.rmtree(self.exec_root, ignore_errors=True)
            else:
                raise DockerdUnavailable(
                    "dockerd did not start with any storage driver (%s):\n%s"
                    % (", ".join(drivers), "\n\n".join(errors)))
        except BaseException:
            self.stop()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return "<Dockerd %s pid %s driver %s>" % (self.base_url, self.pid, self.storage_driver)

    @property
    def pid(self):
        return self._popen.pid if self._popen else None

    @property
    def pids(self):
        """PIDs of dockerd and everything it started that is alive now."""
        if not self._popen:
            return []
        self._refresh_known()
        return sorted(procs.alive(self._known))

    def client(self, timeout=120):
        """A docker.DockerClient talking to this daemon (closed by stop())."""
        import docker

        c = docker.DockerClient(base_url=self.base_url, timeout=timeout)
        self._clients.append(c)
        return c

    # --- start -----------------------------------------------------------------

    def _start(self, driver):
        with open(self.config_file, "w") as f:
            json.dump({}, f)  # do not read /etc/docker/daemon.json
        os.makedirs(self.data_root, exist_ok=True)
        os.makedirs(self.exec_root, exist_ok=True)
        for stale in (self.socket, self.pidfile):
            try:
                os.unlink(stale)
            except FileNotFoundError:
                pass
        self.log_path = os.path.join(self.workdir, "dockerd.%s.log" % driver)
        argv = [
            DOCKERD,
            "--config-file", self.config_file,
            "--data-root", self.data_root,
            "--exec-root", self.exec_root,
            "--host", self.base_url,
            "--pidfile", self.pidfile,
            "--storage-driver", driver,
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--userland-proxy=false",
            "--shutdown-timeout", str(self.shutdown_timeout),
            "--log-level", "warn",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        with open(self.log_path, "wb") as logf:
            self._popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                env=env, start_new_session=True, close_fds=True)
        self._known = procs.remember([self._popen.pid])
        self._wait_ready(driver)

    def _wait_ready(self, driver):
        import docker

        deadline = time.monotonic() + self.start_timeout
        last = None
        while True:
            self._refresh_known()
            rc = self._popen.poll()
            if rc is not None:
                raise DockerdError("dockerd exited with %s; log tail:\n%s"
                                   % (rc, procs.tail(self.log_path)))
            if os.path.exists(self.socket):
                api = None
                try:
                    api = docker.APIClient(base_url=self.base_url, timeout=5)
                    api.ping()
                    info = api.info()
                except Exception as e:  # not answering yet
                    last = e
                else:
                    if info.get("Driver") != driver:
                        raise DockerdError("dockerd uses storage driver %r, not %r"
                                           % (info.get("Driver"), driver))
                    return
                finally:
                    if api is not None:
                        api.close()
            if time.monotonic() > deadline:
                raise DockerdError(
                    "dockerd socket %s did not answer within %.0f s (%s); log tail:\n%s"
                    % (self.socket, self.start_timeout, last, procs.tail(self.log_path)))
            time.sleep(0.05)

    # --- process bookkeeping -----------------------------------------------------

    def _containerd_socket(self):
        return os.path.join(self.exec_root, "containerd", "containerd.sock")

    def _shim_pids(self):
        """containerd-shim processes of *this* daemon (they reparent away from
        containerd, so they are found by our containerd socket path in their
        command line)."""
        sock = self._containerd_socket()
        out = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            # exact argument match: "-address <our socket>"
            for i, a in enumerate(argv[:-1]):
                if a == b"-address" and argv[i + 1].decode("utf-8", "replace") == sock:
                    out.append(int(name))
                    break
        return out

    def _refresh_known(self):
        if not self._popen:
            return
        roots = [p for p in self._known if procs.pid_alive(p, self._known[p])]
        cmap = procs.children_map()
        found = procs.descendants(roots, cmap) if roots else []
        shims = self._shim_pids()
        found += shims + procs.descendants(shims, cmap)
        for p, s in procs.remember(found).items():
            self._known.setdefault(p, s)

    def _stop_processes(self):
        if not self._popen:
            return {}
        self._refresh_known()
        if self._popen.poll() is None:
            # dockerd stops its containers (within --shutdown-timeout) and its
            # containerd on SIGTERM.
            try:
                os.kill(self._popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + self.shutdown_timeout + 20
            while self._popen.poll() is None and time.monotonic() < deadline:
                self._refresh_known()
                time.sleep(0.05)
        self._refresh_known()
        left = procs.terminate(procs.alive(self._known), timeout=5, popens=[self._popen])
        try:
            self._popen.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        return left

    def _unmount_all(self):
        """Lazily unmount anything still mounted under our directories."""
        roots = tuple(os.path.realpath(p) + "/" for p in (self.data_root, self.exec_root))
        mounts = []
        try:
            with open("/proc/self/mountinfo") as f:
                for line in f:
                    mp = line.split()[4].replace("\\040", " ")
                    if (mp + "/").startswith(roots):
                        mounts.append(mp)
        except OSError:
            return
        for mp in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _remove_containers(self):
        try:
            import docker

            api = docker.APIClient(base_url=self.base_url, timeout=10)
        except Exception:
            return
        try:
            for c in api.containers(all=True, quiet=True):
                try:
                    api.remove_container(c["Id"], force=True)
                except Exception:
                    pass
        except Exception:
            pass
        finally:
            api.close()

    def stop(self, remove_data=True):
        """Stop dockerd and everything it started; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        self._clients = []
        if self._popen and self._popen.poll() is None:
            self._remove_containers()
        left = self._stop_processes()
        self._unmount_all()
        if remove_data:
            shutil.rmtree(self.data_root, ignore_errors=True)
            shutil.rmtree(self.exec_root, ignore_errors=True)
        if self._own_run_dir:
            shutil.rmtree(self._run_dir, ignore_errors=True)
        if left:
            raise DockerdError("processes survived SIGKILL: %s" % sorted(left))


# --- the image ------------------------------------------------------------------

_BUILDER_VERSION = "1"
_STDLIB_EXCLUDE_DIRS = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip",
                        "lib2to3", "site-packages", "dist-packages"}
_TOOLS = ["/bin/sh", "/usr/bin/env", "/usr/bin/cat", "/usr/bin/sleep", "/usr/bin/true",
          "/usr/bin/false", "/usr/bin/ls", "/usr/bin/mkdir", "/usr/bin/rm", "/usr/bin/id"]
_PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
           "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


def _python_facts(python):
    out = subprocess.run(
        [python, "-S", "-c",
         "import sys, sysconfig, json; print(json.dumps({"
         "'version': '%d.%d.%d' % sys.version_info[:3],"
         "'xy': '%d.%d' % sys.version_info[:2],"
         "'stdlib': sysconfig.get_path('stdlib'),"
         "'dynload': sysconfig.get_path('platstdlib') + '/lib-dynload',"
         "'executable': sys.executable}))"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, check=True).stdout
    return json.loads(out)


def _ldd(paths):
    """Absolute paths of the shared libraries (and loader) the files need."""
    libs = set()
    paths = list(paths)
    for i in range(0, len(paths), 200):
        p = subprocess.run(["ldd"] + paths[i:i + 200], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        for line in p.stdout.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if "=>" in line:
                target = line.split("=>", 1)[1].strip().split(" (")[0].strip()
                if target.startswith("/"):
                    libs.add(target)
            elif line.startswith("/") and not line.endswith(":"):
                libs.add(line.split(" (")[0].strip())
    return libs


class _TarBuilder:
    """Adds host paths to a tar, reproducing every symlink on the way."""

    def __init__(self, tar):
        self.tar = tar
        self.done = set()

    def _info(self, name, st, type_, linkname=""):
        ti = tarfile.TarInfo(name.lstrip("/"))
        ti.type = type_
        ti.mode = stat.S_IMODE(st.st_mode) if st else 0o755
        ti.mtime = int(st.st_mtime) if st else 0
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        ti.linkname = linkname
        return ti

    def dir(self, path, mode=None):
        if path in self.done or path == "/":
            return
        self.parent(path)
        self.done.add(path)
        st = os.stat(path) if os.path.isdir(path) else None
        ti = self._info(path, st, tarfile.DIRTYPE)
        if mode is not None:
            ti.mode = mode
        self.tar.addfile(ti)

    def parent(self, path):
        parent = os.path.dirname(path)
        if parent != "/":
            self.add(parent)

    def add(self, path):
        """Add PATH (absolute); symlinks in its components are reproduced."""
        path = os.path.normpath(path)
        if path in self.done or path == "/":
            return
        # Resolve symlinks component by component (merged-/usr: /lib -> usr/lib).
        head = "/"
        parts = path.strip("/").split("/")
        for i, part in enumerate(parts):
            cur = os.path.join(head, part)
            if os.path.islink(cur):
                if cur not in self.done:
                    self.parent(cur)
                    self.done.add(cur)
                    target = os.readlink(cur)
                    self.tar.addfile(self._info(cur, os.lstat(cur), tarfile.SYMTYPE, target))
                real = os.path.normpath(os.path.join(os.path.dirname(cur), os.readlink(cur)))
                rest = parts[i + 1:]
                if real in self.done and not rest:
                    return
                return self.add(os.path.join(real, *rest) if rest else real)
            head = cur
        if os.path.isdir(path):
            self.dir(path)
            return
        self.parent(path)
        self.done.add(path)
        st = os.stat(path)
        ti = self._info(path, st, tarfile.REGTYPE)
        ti.size = st.st_size
        with open(path, "rb") as f:
            self.tar.addfile(ti, f)

    def text(self, path, content, mode=0o644):
        self.parent(path)
        self.done.add(path)
        data = content.encode()
        ti = self._info(path, None, tarfile.REGTYPE)
        ti.mode = mode
        ti.mtime = int(time.time())
        ti.size = len(data)
        self.tar.addfile(ti, io.BytesIO(data))


def _cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "chopsticks-test")


def python_rootfs_tarball(python="/usr/bin/python3", cache_dir=None):
    """Path of a cached rootfs tarball with PYTHON, its stdlib, its libraries, sh."""
    facts = _python_facts(python)
    real = os.path.realpath(python)
    st = os.stat(real)
    stamp = "%s|%s|%d|%d|%s" % (_BUILDER_VERSION, real, st.st_size, int(st.st_mtime),
                                facts["stdlib"])
    key = hashlib.sha256(stamp.encode()).hexdigest()[:12]
    cache_dir = cache_dir or _cache_dir()
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, "python-%s-%s.tar" % (facts["version"], key))
    if os.path.exists(path):
        return path

    stdlib = os.path.realpath(facts["stdlib"])
    files = []
    for root, dirs, names in os.walk(stdlib):
        rel = os.path.relpath(root, stdlib)
        if rel == ".":
            dirs[:] = [d for d in dirs if d not in _STDLIB_EXCLUDE_DIRS
                       and not d.startswith("config-")]
        dirs[:] = [d for d in dirs if d not in ("test", "tests", "idle_test")]
        for n in names:
            if n.endswith(".opt-1.pyc") or n.endswith(".opt-2.pyc"):
                continue
            files.append(os.path.join(root, n))
    dynload = os.path.realpath(facts["dynload"])
    sos = [f for f in files if f.startswith(dynload + "/") and f.endswith(".so")]
    tools = [t for t in _TOOLS if os.path.exists(t)]
    libs = _ldd([real] + [os.path.realpath(t) for t in tools] + sos)

    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
    os.close(fd)
    try:
        with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
            b = _TarBuilder(tar)
            # merged-/usr top-level symlinks first, as on the host
            for top in ("/bin", "/sbin", "/lib", "/lib64"):
                if os.path.islink(top):
                    b.add(top)
            b.add(python)
            b.add(real)
            ver_link = "/usr/bin/python%s" % facts["xy"]
            if os.path.exists(ver_link):
                b.add(ver_link)
            for t in tools:
                b.add(t)
            for lib in sorted(libs):
                b.add(lib)
            for f in files:
                if os.path.islink(f) and not os.path.exists(f):
                    continue  # e.g. sitecustomize.py -> /etc/... handled below
                b.add(f)
            etc_py = "/etc/python%s" % facts["xy"]
            if os.path.isdir(etc_py):
                for n in os.listdir(etc_py):
                    b.add(os.path.join(etc_py, n))
            b.text("/etc/passwd", _PASSWD)
            b.text("/etc/group", _GROUP)
            b.dir("/tmp", mode=0o1777)
            b.dir("/root", mode=0o700)
            b.dir("/proc")
            b.dir("/sys")
            b.dir("/dev")
            b.dir("/etc")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def build_python_image(client_or_dockerd, tag=DEFAULT_IMAGE_TAG, python="/usr/bin/python3",
                       cache_dir=None, verify=True):
    """Import the host's Python as image TAG (no registry needed); return TAG.

    CLIENT_OR_DOCKERD is a docker.DockerClient or a Dockerd.  Does nothing if
    the daemon already has TAG.  With VERIFY, runs a container that imports
    zlib, hashlib, json, threading and socket, and raises if it fails.
    """
    import docker

    client = client_or_dockerd
    if isinstance(client, Dockerd):
        client = client.client()
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    tarball = python_rootfs_tarball(python, cache_dir)
    repo, _, tg = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
    out = client.api.import_image_from_file(
        tarball, repository=repo, tag=tg,
        changes=["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 "ENV LANG=C.UTF-8",
                 "WORKDIR /root",
                 'CMD ["/usr/bin/python3"]'])
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        raise DockerdError("docker import of %s as %s failed: %s" % (tarball, tag, out))
    if verify:
        probe = "import zlib, hashlib, json, threading, socket; print(1)"
        try:
            res = client.containers.run(tag, ["/usr/bin/python3", "-c", probe],
                                        network_mode="none", remove=True,
                                        stdout=True, stderr=True)
        except docker.errors.ContainerError as e:
            raise DockerdError("python in image %s does not work: %s" % (tag, e))
        if res.strip() != b"1":
            raise DockerdError("python in image %s printed %r" % (tag, res))
    return tag


if __name__ == "__main__":  # build the cached tarball: python -m tests.fleet.dockerd
    print(python_rootfs_tarball(*sys.argv[1:2]))
