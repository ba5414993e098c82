"""Run the side-by-side benchmarks: chopsticks against its peers on one loopback sshd fleet.

    python bench/run.py                      # everything (all scenarios, all tools, 3 runs)
    python bench/run.py cold --n 10,100 --reps 1
    python bench/run.py warm --tools chopsticks,mitogen --n 100
    python bench/run.py import               # scenario 3 at N=100
    python bench/run.py put                  # scenario 4 at N=100
    python bench/run.py locust --n 100       # scenario 5

Scenarios: ``cold`` (1), ``warm`` (2), ``import`` (3), ``put`` (4),
``locust`` (5); ``fanout`` is cold and warm measured in the same runner
process (the cold call, then warm rounds on the same connections), which is
what ``all`` uses to save a second connect per figure.

Each measurement is one runner process (``bench/peers/run_<tool>.py``) in the
tool's own virtualenv (``bench/setup_peers.sh``), in a process group of its
own, killed after ``--timeout`` seconds (recorded as a timeout). This driver
is a child subreaper, so whatever a runner leaves behind is found and stopped
by PID before the next run. Results go to ``bench/results/<scenario>.json``
(records for the same tool, N and repetition are replaced); runner logs to
``bench/results/raw/``. ``bench/report.py`` turns them into
``docs/benchmarks.rst``.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from tests.fleet import procs  # noqa: E402
from tests.fleet.sshd import CLIENT_KEX, SSHFleet  # noqa: E402

VENVS = BENCH / '.venvs'
RESULTS = BENCH / 'results'
RAW = RESULTS / 'raw'
IMPORT_PATH = VENVS / 'importpkg'
REMOTE_PYTHON = '/usr/bin/python3'


class Tool:
    def __init__(self, name: str, runner: str, venv: str | None, label: str,
                 extra: dict[str, Any] | None = None) -> None:
        self.name = name
        self.runner = BENCH / 'peers' / runner
        self.venv = venv
        self.label = label
        self.extra = extra or {}

    @property
    def python(self) -> str:
        if self.venv is None:
            return sys.executable
        return str(VENVS / self.venv / 'bin' / 'python')


TOOLS = {t.name: t for t in [
    Tool('chopsticks', 'run_chopsticks.py', None, 'chopsticks (OpenSSH)',
         {'transport': 'openssh'}),
    Tool('chopsticks-paramiko', 'run_chopsticks.py', None, 'chopsticks (paramiko)',
         {'transport': 'paramiko'}),
    Tool('classic', 'run_classic.py', 'classic', 'classic chopsticks 1.0'),
    Tool('mitogen', 'run_mitogen.py', 'mitogen', 'mitogen'),
    Tool('parallel-ssh', 'run_pssh.py', 'pssh', 'parallel-ssh'),
    Tool('fabric', 'run_fabric.py', 'fabric', 'Fabric ThreadingGroup'),
    Tool('asyncssh', 'run_asyncssh.py', 'asyncssh', 'asyncssh'),
    Tool('floor', 'run_floor.py', None, 'floor: bare ssh, pooled'),
]}

#: Which tools take part in which scenario (the others cannot do it).
SCENARIO_TOOLS = {
    'fanout': list(TOOLS),
    'cold': list(TOOLS),
    'warm': list(TOOLS),
    'import': ['chopsticks', 'chopsticks-paramiko', 'classic', 'mitogen'],
    'put': list(TOOLS),
}
DEFAULT_N = {
    'fanout': [10, 100, 500, 1000],
    'cold': [10, 100, 500, 1000],
    'warm': [10, 100, 500, 1000],
    'import': [100],
    'put': [100],
    'locust': [100],
}
ALL = ['fanout', 'import', 'put', 'locust']


# --- machine description -----------------------------------------------------

def _cmd(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=30)
        return p.stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f'unavailable ({exc})'


def machine() -> dict[str, Any]:
    with open('/proc/meminfo') as f:
        mem_kb = int(f.readline().split()[1])
    cpu = ''
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    peers = {}
    for tool in TOOLS.values():
        if tool.venv and Path(tool.python).exists():
            peers[tool.venv] = _cmd([tool.python, '-c', 'import sys; print(sys.version.split()[0])'])
            peers[tool.venv + '_packages'] = (VENVS / tool.venv / '.requirements').read_text().strip() \
                if (VENVS / tool.venv / '.requirements').exists() else ''
    return {
        'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        'nproc': os.cpu_count(),
        'cpu': cpu,
        'memory_gib': round(mem_kb / 1024 / 1024, 1),
        'kernel': platform.release(),
        'os': _cmd(['sh', '-c', '. /etc/os-release && echo "$PRETTY_NAME"']),
        'controller_python': platform.python_version(),
        'remote_python': _cmd([REMOTE_PYTHON, '--version']),
        'ssh': _cmd(['ssh', '-V']),
        'sshd': (_cmd(['sh', '-c', 'sshd -V 2>&1 || true']).splitlines() or [''])[0],
        'gevent': _cmd([sys.executable, '-c', 'import gevent; print(gevent.__version__)']),
        'locust': _cmd([sys.executable, '-c', 'import locust; print(locust.__version__)']),
        'chopsticks_commit': _cmd(['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD']),
        'open_files_limit': _cmd(['sh', '-c', 'ulimit -n']),
        'loadavg_at_start': open('/proc/loadavg').read().split()[:3],
        'peers': peers,
    }


# --- processes -------------------------------------------------------------

def become_subreaper() -> None:
    """Orphans of a runner are re-parented here, so they can be found and stopped."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def stop_strays(fleet: SSHFleet) -> list[int]:
    """Stop every descendant of this driver outside the fleet (leftovers of a runner)."""
    cmap = procs.children_map()
    keep = set(fleet.pids) | set(procs.descendants(fleet.pids, cmap))
    strays = [p for p in procs.descendants(os.getpid(), cmap) if p not in keep]
    if strays:
        procs.stop_tree(strays, timeout=3.0)
    return strays


def fleet_cpu(fleet: SSHFleet) -> float:
    """CPU seconds of the sshd listeners and every session they have reaped.

    Per-connection sshds, login shells and remote pythons are descendants of
    the listeners; once they exit and are waited for, the kernel adds their
    CPU to the listener's cutime/cstime. Taken when the fleet is idle, the
    difference between two readings is the server-side cost of a run.
    """
    tick = os.sysconf('SC_CLK_TCK')
    total = 0
    for pid in fleet.pids:
        try:
            with open(f'/proc/{pid}/stat', 'rb') as f:
                fields = f.read().rsplit(b')', 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / tick


def wait_fleet_idle(fleet: SSHFleet, timeout: float = 30.0) -> int:
    """Wait until the sshds have no sessions left; the number still there."""
    def busy() -> int:
        return len(procs.descendants(fleet.pids))
    procs.wait_until(lambda: busy() == 0, timeout, interval=0.1)
    return busy()


# --- one measurement -------------------------------------------------------

MARK = 'BENCH-RESULT '


def run_one(tool: Tool, scenario: str, fleet: SSHFleet, n: int, rep: int,
            args: argparse.Namespace, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        'scenario': 'fanout' if scenario in ('cold', 'warm') else scenario,
        'hosts': fleet.hosts[:n],
        'port': fleet.port,
        'user': fleet.user,
        'identity_file': fleet.identity_file,
        'known_hosts': fleet.known_hosts,
        'ssh_config': fleet.ssh_config,
        'ssh_options': fleet.ssh_options,
        'kex': CLIENT_KEX,
        'python': REMOTE_PYTHON,
        'concurrency': args.concurrency,
        'connect_timeout_s': args.connect_timeout,
        'op_timeout_s': max(args.timeout - 30, 30),
        'warm_rounds': 0 if scenario == 'cold' else args.rounds,
        'warm_min_rounds': args.min_rounds,
        'warm_budget_s': args.warm_budget,
        'repo_root': str(ROOT),
        'import_path': str(IMPORT_PATH),
    }
    spec.update(tool.extra)
    spec.update(extra or {})
    RAW.mkdir(parents=True, exist_ok=True)
    log_path = RAW / f'{scenario}-{tool.name}-{n}-{rep}.log'
    base = {'tool': tool.name, 'label': tool.label, 'scenario': scenario, 'n': n, 'rep': rep}
    if not Path(tool.python).exists():
        return dict(base, fatal=f'{tool.python} missing: run bash bench/setup_peers.sh')
    server_cpu0 = fleet_cpu(fleet)
    t0 = time.monotonic()
    with open(log_path, 'w') as log:
        p = subprocess.Popen([tool.python, str(tool.runner)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=log, cwd=str(ROOT),
                             start_new_session=True, universal_newlines=True)
        try:
            out, _ = p.communicate(json.dumps(spec), timeout=args.timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            out, _ = p.communicate()
            timed_out = True
        log.write('\n--- stdout ---\n' + (out or ''))
    record: dict[str, Any] | None = None
    for line in (out or '').splitlines():
        if line.startswith(MARK):
            record = json.loads(line[len(MARK):])
    if record is None:
        record = {'fatal': (f'timeout: killed after {args.timeout:g}s' if timed_out
                            else f'runner exited {p.returncode} without a result; '
                                 f'see {log_path.relative_to(ROOT)}')}
        tail = log_path.read_text(errors='replace').strip().splitlines()[-3:]
        record['log_tail'] = tail
    record.update(base)
    record['elapsed_s'] = round(time.monotonic() - t0, 3)
    strays = stop_strays(fleet)
    if strays:
        record['strays_stopped'] = len(strays)
    for path in record.pop('remote_paths', []) or []:
        try:
            os.unlink(path)  # loopback fleet: the "remote" files are on this machine
        except OSError:
            pass
    busy = wait_fleet_idle(fleet)
    if busy:
        record['sshd_sessions_left'] = busy
    # the whole run (connect, calls, close), server side: sshd, shells, pythons
    record['server_cpu_s'] = round(fleet_cpu(fleet) - server_cpu0, 3)
    return record


# --- results -----------------------------------------------------------------

def save(scenario: str, records: list[dict[str, Any]], info: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f'{scenario}.json'
    old: list[dict[str, Any]] = []
    if path.exists():
        old = json.loads(path.read_text()).get('records', [])
    keys = {(r['tool'], r['n'], r['rep']) for r in records}
    merged = [r for r in old if (r['tool'], r['n'], r['rep']) not in keys] + records
    merged.sort(key=lambda r: (r['tool'], r['n'], r['rep']))
    path.write_text(json.dumps({'machine': info, 'records': merged}, indent=1, sort_keys=True)
                    + '\n')
    return path


def summary_line(r: dict[str, Any]) -> str:
    parts = [f"{r['scenario']:<6} {r['tool']:<20} N={r['n']:<5} rep={r['rep']}"]
    for key in ('cold_s', 'warm_p50_s', 'warm_p99_s', 'connect_s', 'import_s', 'put_s',
                'rps', 'p50_ms', 'p99_ms', 'server_cpu_s'):
        if r.get(key) is not None:
            parts.append(f'{key}={r[key]:.3f}' if isinstance(r[key], float) else f'{key}={r[key]}')
    for key in ('cold_errors', 'import_errors', 'put_errors', 'failures'):
        if r.get(key):
            parts.append(f'{key}={r[key]}')
    if r.get('fatal'):
        parts.append('FATAL ' + r['fatal'][:160])
    if r.get('unsupported'):
        parts.append('unsupported')
    return '  '.join(parts)


# --- main ----------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('scenarios', nargs='*', default=['all'],
                    help='all, fanout, cold, warm, import, put, locust (default: all)')
    ap.add_argument('--tools', default='', help='comma-separated (default: every tool '
                    'that can do the scenario): ' + ', '.join(TOOLS))
    ap.add_argument('--n', default='', help='comma-separated host counts '
                    '(default: 10,100,500,1000 for cold/warm, 100 otherwise)')
    ap.add_argument('--reps', type=int, default=3, help='runs per figure (default 3)')
    ap.add_argument('--concurrency', type=int, default=100)
    ap.add_argument('--timeout', type=float, default=300.0,
                    help='seconds before a runner is killed (default 300)')
    ap.add_argument('--connect-timeout', type=float, default=60.0)
    ap.add_argument('--rounds', type=int, default=50, help='warm rounds at most (default 50)')
    ap.add_argument('--min-rounds', type=int, default=3)
    ap.add_argument('--warm-budget', type=float, default=20.0,
                    help='no new warm round after this many seconds (default 20)')
    ap.add_argument('--put-mib', type=int, default=10)
    ap.add_argument('--locust-time', default='20s')
    ap.add_argument('--no-save', action='store_true', help='print, do not write results')
    args = ap.parse_args(argv)
    scenarios = []
    for s in args.scenarios:
        scenarios += ALL if s == 'all' else [s]
    for s in scenarios:
        if s not in DEFAULT_N:
            ap.error(f'unknown scenario {s!r}')
    args.scenarios = scenarios
    args.tool_list = [t for t in args.tools.split(',') if t]
    for t in args.tool_list:
        if t not in TOOLS:
            ap.error(f'unknown tool {t!r}; known: {", ".join(TOOLS)}')
    args.n_list = [int(x) for x in args.n.split(',') if x]
    return args


def _stop(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the fleet's cleanup


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A background (nohup ... &) run inherits SIGINT ignored: make SIGINT and
    # SIGTERM both stop the run cleanly (fleet stopped, routes removed).
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    become_subreaper()
    info = machine()
    plan = []
    for scenario in args.scenarios:
        ns = args.n_list or DEFAULT_N[scenario]
        plan.append((scenario, ns))
    biggest = max(n for _, ns in plan for n in ns)
    workdir = Path(tempfile.mkdtemp(prefix='chopsticks-bench-'))
    put_dir = workdir / 'put'
    print(f'fleet: {biggest} hosts in {workdir}', flush=True)
    try:
        with SSHFleet(biggest, workdir / 'fleet') as fleet:
            print(f'fleet up: {fleet!r}', flush=True)
            for scenario, ns in plan:
                if scenario == 'locust':
                    from locust_run import run_locust  # bench/locust_run.py
                    records = run_locust(fleet, ns, args)
                else:
                    records = run_scenario(scenario, ns, fleet, args, put_dir)
                if not args.no_save:
                    saved = save(scenario, records, info)
                    print(f'saved {len(records)} records to {saved.relative_to(ROOT)}', flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def run_scenario(scenario: str, ns: list[int], fleet: SSHFleet, args: argparse.Namespace,
                 put_dir: Path) -> list[dict[str, Any]]:
    tools = [t for t in (args.tool_list or SCENARIO_TOOLS[scenario])
             if t in SCENARIO_TOOLS[scenario]]
    records = []
    extra: dict[str, Any] = {}
    if scenario == 'put':
        put_dir.mkdir(parents=True, exist_ok=True)
        src = put_dir / 'source.bin'
        if not src.exists():
            with open(src, 'wb') as f:
                f.write(os.urandom(args.put_mib << 20))
        extra['put_file'] = str(src)
    # Interleave the tools within each repetition, so a slow spell of the
    # (shared) machine does not land on one tool only.
    for n in ns:
        for rep in range(1, args.reps + 1):
            for name in tools:
                if scenario == 'put':
                    remote = put_dir / f'{name}-{n}-{rep}'
                    remote.mkdir(parents=True, exist_ok=True)
                    extra['put_remote_dir'] = str(remote)
                record = run_one(TOOLS[name], scenario, fleet, n, rep, args, extra)
                if scenario == 'put':
                    shutil.rmtree(put_dir / f'{name}-{n}-{rep}', ignore_errors=True)
                records.append(record)
                print(summary_line(record), flush=True)
    return records


if __name__ == '__main__':
    sys.exit(main())
