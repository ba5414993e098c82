"""What every benchmark runner shares: the spec it reads, the measurements, the JSON it prints.

Stdlib only: runners import this from each peer's own virtualenv.

A runner is started by ``bench/run.py`` as ``<venv python> bench/peers/run_<tool>.py``
in a process group of its own, reads one JSON spec on stdin (hosts and ssh
settings, scenario, N, ...), does the scenario and prints one line
``BENCH-RESULT {...}`` on stdout. Everything else it prints is kept as a log.

Measurements, all on the controller (the runner process):

* wall times with ``time.perf_counter``;
* CPU: ``getrusage(RUSAGE_SELF)`` and ``getrusage(RUSAGE_CHILDREN)`` at exit
  (children are counted by the kernel only once waited for), and, for a
  phase, a snapshot that adds the live children (their time on the CPU from
  ``/proc/<pid>/schedstat`` plus their own waited children), so the ssh
  clients of a still-open connection are counted;
* memory: ``ru_maxrss`` (peak RSS of the runner, KiB) and the RSS before
  connecting, so RSS per connection can be estimated;
* bytes on the wire: the sum of ``bytes_acked`` (controller -> hosts) and
  ``bytes_received`` (hosts -> controller) of the established TCP
  connections to the fleet's port, read with ``ss -tin`` (the kernel's
  tcp_info) before and after a phase. That is what went over SSH,
  encrypted, whoever wrote it (an ssh child process or the runner itself),
  and it is only counted for connections still open at the end of the
  phase. (``wchar`` of ``/proc/self/io`` is recorded too, but it misses
  ``send()`` on sockets, so it is no measure of traffic.)
"""
import json
import os
import re
import resource
import subprocess
import sys
import time
import traceback

MARK = 'BENCH-RESULT '
TICK = float(os.sysconf('SC_CLK_TCK'))
#: A ``time.time()`` result further than this from the controller's clock is an error.
CLOCK_SLACK = 120.0


def read_spec():
    return json.load(sys.stdin)


def percentile(values, q):
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    xs = sorted(values)
    if not xs:
        return None
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _children_pids():
    pids = []
    try:
        tasks = os.listdir('/proc/self/task')
    except OSError:
        return pids
    for tid in tasks:
        try:
            with open('/proc/self/task/%s/children' % tid) as f:
                pids.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return pids


def _live_children_cpu():
    """CPU seconds of the live children (and of what they reaped), precisely.

    A live process's utime/stime in /proc/<pid>/stat are tick-sampled (a
    short-lived ssh client reads 0 or 10 ms), so its own time is taken from
    /proc/<pid>/schedstat (nanoseconds on the CPU, user and system together);
    cutime/cstime add its children that it has waited for.
    """
    total = 0.0
    for pid in _children_pids():
        try:
            with open('/proc/%d/schedstat' % pid) as f:
                own = int(f.read().split()[0]) / 1e9
            with open('/proc/%d/stat' % pid, 'rb') as f:
                data = f.read()
        except (OSError, ValueError, IndexError):
            continue
        fields = data[data.rindex(b')') + 2:].split()
        # after comm: state=0 ... cutime=13 cstime=14
        total += own + (int(fields[13]) + int(fields[14])) / TICK
    return total


def cpu_snapshot():
    """CPU seconds so far: this process, and its children (waited and live)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {'self': me.ru_utime + me.ru_stime,
            'children': ch.ru_utime + ch.ru_stime + _live_children_cpu()}


def cpu_delta(before, after):
    return {k: round(after[k] - before[k], 4) for k in before}


def wchar():
    try:
        with open('/proc/self/io') as f:
            for line in f:
                if line.startswith('wchar:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


_SS_FIELD = re.compile(r'\b(bytes_acked|bytes_received):(\d+)')
#: The fleet's port, for :func:`tcp_bytes` (set by :func:`run` from the spec).
PORT = None


def tcp_bytes(port=None):
    """``(sent, received)`` bytes of the established connections to ``port``, or None."""
    port = PORT if port is None else port
    if port is None:
        return None
    try:
        out = subprocess.run(['ss', '-tinH', 'state', 'established',
                              '( dport = :%d )' % port],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    sent = received = 0
    for key, value in _SS_FIELD.findall(out):
        if key == 'bytes_acked':
            sent += int(value)
        else:
            received += int(value)
    return sent, received


def rss_kb():
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def open_fds():
    try:
        return len(os.listdir('/proc/self/fd'))
    except OSError:
        return None


class Record(dict):
    """The result of one runner invocation, printed as JSON at exit."""

    def __init__(self, tool, spec):
        dict.__init__(self)
        self['tool'] = tool
        self['scenario'] = spec['scenario']
        self['n'] = len(spec['hosts'])
        self['concurrency'] = spec.get('concurrency')
        self['python'] = sys.version.split()[0]
        self['notes'] = []
        self['rss_start_kb'] = rss_kb()
        self._t0 = None

    def end_phase(self, name, start):
        """Store ``<name>_s``, ``_cpu``, ``_wchar`` and ``_wire`` since ``start``."""
        for key, value in phase_end(start).items():
            self[name + ('_s' if key == 's' else '_' + key)] = value
        return self[name + '_s']

    def note(self, text):
        if text not in self['notes']:
            self['notes'].append(text)

    def check_times(self, results, prefix=''):
        """Count (host -> float or error text) results; store ok/errors/error samples."""
        now = time.time()
        ok = 0
        errors = {}
        for host, value in results.items():
            if isinstance(value, float) and abs(value - now) < CLOCK_SLACK:
                ok += 1
            else:
                text = value if isinstance(value, str) else 'unexpected result %r' % (value,)
                text = ' '.join(str(text).split())[:300]
                errors[text] = errors.get(text, 0) + 1
        self.set_outcome(ok, errors, prefix)

    def set_outcome(self, ok, errors, prefix=''):
        self[prefix + 'ok'] = ok
        self[prefix + 'errors'] = sum(errors.values())
        if errors:
            common = sorted(errors.items(), key=lambda kv: -kv[1])[:5]
            self[prefix + 'error_samples'] = [{'count': c, 'msg': m} for m, c in common]


def run(tool, scenario_funcs, version=None):
    """Read the spec, run ``scenario_funcs[spec['scenario']](spec, rec)``, print the record."""
    global PORT
    spec = read_spec()
    PORT = spec.get('port')
    rec = Record(tool, spec)
    if version is not None:
        rec['version'] = version
    func = scenario_funcs.get(spec['scenario'])
    t0 = time.perf_counter()
    try:
        if func is None:
            rec['unsupported'] = 'no %s scenario for %s' % (spec['scenario'], tool)
        else:
            func(spec, rec)
    except BaseException as exc:  # noqa: B036 - recorded, the run goes on with the next tool
        rec['fatal'] = '%s: %s' % (type(exc).__name__, ' '.join(str(exc).split())[:500])
        rec['traceback'] = traceback.format_exc()[-3000:]
    rec['runner_wall_s'] = round(time.perf_counter() - t0, 4)
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    rec['rusage'] = {
        'self_user': me.ru_utime, 'self_sys': me.ru_stime,
        'children_user': ch.ru_utime, 'children_sys': ch.ru_stime,
        'self_maxrss_kb': me.ru_maxrss, 'children_maxrss_kb': ch.ru_maxrss,
    }
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(1, (MARK + json.dumps(rec, sort_keys=True) + '\n').encode())
    # Some tools leave non-daemon threads or atexit hooks that hang: the
    # record is out, so leave now.
    os._exit(0)


def phase_start():
    """A mark to measure a phase from (wire bytes first, the clock last)."""
    wire = tcp_bytes()
    return {'wire': wire, 'wchar': wchar(), 'cpu': cpu_snapshot(), 't': time.perf_counter()}


def phase_end(start):
    """What happened since ``phase_start()``: seconds, CPU, wchar and wire bytes."""
    t = time.perf_counter() - start['t']
    cpu = cpu_delta(start['cpu'], cpu_snapshot())
    w = wchar()
    out = {'s': t, 'cpu': cpu,
           'wchar': w - start['wchar'] if None not in (w, start['wchar']) else None}
    wire = tcp_bytes()
    if wire is not None and start['wire'] is not None:
        out['wire'] = {'sent': wire[0] - start['wire'][0],
                       'received': wire[1] - start['wire'][1]}
    return out


class Warm:
    """Bookkeeping of warm rounds: at least ``warm_min_rounds``, at most
    ``warm_rounds``, and no new round once ``warm_budget_s`` seconds have gone.

    ::

        warm = Warm(spec)
        while warm.more():
            t0 = time.perf_counter()
            results = one_round()          # host -> value
            warm.add(time.perf_counter() - t0, results)
        warm.store(rec)
    """

    def __init__(self, spec):
        self.max_rounds = int(spec.get('warm_rounds', 0))
        self.min_rounds = int(spec.get('warm_min_rounds', 5))
        self.budget = float(spec.get('warm_budget_s', 60.0))
        self.times = []
        self.bad = 0
        self.last_errors = None
        self.start = phase_start() if self.max_rounds > 0 else None

    def more(self):
        if len(self.times) >= self.max_rounds:
            return False
        if len(self.times) >= self.min_rounds:
            return time.perf_counter() - self.start['t'] <= self.budget
        return True

    def add(self, seconds, results):
        self.times.append(seconds)
        probe = Record.__new__(Record)
        probe.check_times(results)
        if probe['errors']:
            self.bad += 1
            self.last_errors = probe.get('error_samples')

    def store(self, rec):
        if not self.times:
            return
        cpu = phase_end(self.start)['cpu']
        times = self.times
        rec['warm_s'] = [round(t, 6) for t in times]
        rec['warm_p50_s'] = round(percentile(times, 50), 6)
        rec['warm_p99_s'] = round(percentile(times, 99), 6)
        rec['warm_rounds'] = len(times)
        rec['warm_cpu_per_round'] = {k: round(v / len(times), 5) for k, v in cpu.items()}
        rec['warm_rounds_with_errors'] = self.bad
        if self.last_errors:
            rec['warm_error_samples'] = self.last_errors


def warm_rounds(spec, rec, one_round):
    """Time ``one_round()`` (returning host -> value) repeatedly; store the figures."""
    warm = Warm(spec)
    while warm.more():
        t0 = time.perf_counter()
        results = one_round()
        warm.add(time.perf_counter() - t0, results)
    warm.store(rec)
