"""Turn bench/results/*.json into docs/benchmarks.rst and the plots in docs/_static/bench/.

    python bench/report.py

Every figure is the median over the runs (repetitions) of one tool at one N;
the number of runs is shown. A run that died (a ``fatal`` error or a
timeout) or where some hosts failed is shown as such, with the error text
in the notes under the table. The hand-written analysis in
``bench/findings.rst`` is copied in as it is.
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / 'results'
DOC = ROOT / 'docs' / 'benchmarks.rst'
STATIC = ROOT / 'docs' / '_static' / 'bench'
FINDINGS = BENCH / 'findings.rst'

ORDER = ['chopsticks', 'chopsticks-paramiko', 'classic', 'mitogen', 'parallel-ssh', 'fabric',
         'asyncssh', 'floor']
LABELS = {
    'chopsticks': 'chopsticks (OpenSSH)',
    'chopsticks-paramiko': 'chopsticks (paramiko)',
    'classic': 'classic chopsticks 1.0',
    'mitogen': 'mitogen',
    'parallel-ssh': 'parallel-ssh',
    'fabric': 'Fabric ThreadingGroup',
    'asyncssh': 'asyncssh',
    'floor': 'floor: bare ssh, pooled',
}
OURS = 'chopsticks'


# --- loading -----------------------------------------------------------------

def load(name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    path = RESULTS / f'{name}.json'
    if not path.exists():
        return [], {}
    data = json.loads(path.read_text())
    return data.get('records', []), data.get('machine', {})


def group(records: Iterable[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    out: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        out[(r['tool'], r['n'])].append(r)
    return out


def tools_in(groups: dict[tuple[str, int], Any]) -> list[str]:
    present = {tool for tool, _ in groups}
    return [t for t in ORDER if t in present] + sorted(present - set(ORDER))


def ns_in(groups: dict[tuple[str, int], Any]) -> list[int]:
    return sorted({n for _, n in groups})


# --- one cell ------------------------------------------------------------------

class Notes:
    """Numbered notes under a table: error texts, each given once."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def ref(self, text: str) -> str:
        text = ' '.join(text.split())
        if text not in self.items:
            self.items.append(text)
        return f'[{self.items.index(text) + 1}]'

    def rst(self) -> str:
        if not self.items:
            return ''
        return '\n'.join(f'{i}. {_escape(t)}' for i, t in enumerate(self.items, 1)) + '\n'


def _escape(text: str) -> str:
    return text.replace('*', r'\*').replace('`', "'").replace('|', r'\|')


def error_text(r: dict[str, Any], prefix: str) -> str | None:
    """Why a run does not count, or None."""
    if r.get('unsupported'):
        return None
    if r.get('fatal'):
        return f"{r['tool']} N={r['n']}: {r['fatal'][:300]}"
    errors = r.get(prefix + 'errors')
    if errors:
        samples = r.get(prefix + 'error_samples') or [{}]
        msg = samples[0].get('msg', '')
        return f"{r['tool']} N={r['n']}: {errors}/{r['n']} hosts failed, e.g. {msg[:240]}"
    return None


def median_of(runs: list[dict[str, Any]], value: Callable[[dict[str, Any]], Any],
              prefix: str) -> tuple[float | None, int, list[str]]:
    """``(median over good runs, number of good runs, error texts of the others)``."""
    good = []
    errors = []
    for r in runs:
        err = error_text(r, prefix)
        v = value(r)
        if err is None and v is not None:
            good.append(v)
        elif err is not None:
            errors.append(err)
    return (statistics.median(good) if good else None), len(good), errors


def fmt_s(v: float | None) -> str:
    if v is None:
        return ''
    if v < 0.01:
        return f'{v * 1000:.2f} ms'
    if v < 1:
        return f'{v * 1000:.0f} ms'
    return f'{v:.2f} s'


def cell(runs: list[dict[str, Any]], value: Callable[[dict[str, Any]], Any], prefix: str,
         notes: Notes, fmt: Callable[[float | None], str] = fmt_s) -> tuple[str, float | None]:
    if not runs:
        return '', None
    if all(r.get('unsupported') for r in runs):
        return 'n/a', None
    med, count, errors = median_of(runs, value, prefix)
    text = fmt(med) if med is not None else 'fails'
    if errors:
        text += ' ' + ' '.join(sorted({notes.ref(e) for e in errors}))
    if med is not None and count < len(runs):
        text += f' ({count}/{len(runs)} runs)'
    return text, med


def ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return ''
    return f'{ours / theirs:.2f}'


# --- RST ---------------------------------------------------------------------------

def list_table(title: str, header: list[str] | None, rows: list[list[str]],
               widths: list[int] | None = None) -> str:
    lines = [f'.. list-table:: {title}', f'   :header-rows: {0 if header is None else 1}']
    if widths:
        lines.append('   :widths: ' + ' '.join(map(str, widths)))
    lines.append('')
    for row in ([header] if header else []) + rows:
        lines.append('   * - ' + (row[0] or ' '))
        for c in row[1:]:
            lines.append('     - ' + (c or ' '))
    return '\n'.join(lines) + '\n'


def heading(text: str, char: str) -> str:
    return f'{text}\n{char * len(text)}\n'


# --- sections ------------------------------------------------------------------

def cpu_of(r: dict[str, Any], phase: str, key: str) -> float | None:
    cpu = r.get(phase + '_cpu')
    return cpu.get(key) if isinstance(cpu, dict) else None


def peak_rss_mib(r: dict[str, Any]) -> float | None:
    ru = r.get('rusage') or {}
    return ru['self_maxrss_kb'] / 1024 if ru.get('self_maxrss_kb') else None


def fanout_records() -> list[dict[str, Any]]:
    records = []
    for name in ('fanout', 'cold', 'warm'):
        records += load(name)[0]
    return records


def cold_section(notes: Notes) -> tuple[str, dict[str, dict[int, float]]]:
    groups = group(fanout_records())
    if not groups:
        return '', {}
    tools, ns = tools_in(groups), ns_in(groups)
    medians: dict[str, dict[int, float]] = defaultdict(dict)
    rows = []
    for tool in tools:
        row = [LABELS.get(tool, tool)]
        for n in ns:
            text, med = cell(groups.get((tool, n), []), lambda r: r.get('cold_s'), 'cold_', notes)
            if med is not None:
                medians[tool][n] = med
            row.append(text)
        rows.append(row)
    out = list_table('Cold fan-out: connect, bootstrap, call(time.time), collect (median)',
                     ['tool'] + [f'N={n}' for n in ns], rows)
    # ratios
    rrows = []
    for tool in tools:
        if tool == OURS:
            continue
        rrows.append([LABELS.get(tool, tool)] + [ratio(medians[OURS].get(n), medians[tool].get(n))
                                                 for n in ns])
    out += '\n' + list_table('chopsticks time ÷ tool time, cold (below 1: chopsticks is faster)',
                             ['vs'] + [f'N={n}' for n in ns], rrows)
    # resources
    crows = []
    for tool in tools:
        row = [LABELS.get(tool, tool)]
        for n in ns:
            runs = [r for r in groups.get((tool, n), []) if not r.get('fatal')]
            if not runs:
                row.append('')
                continue
            me = statistics.median([cpu_of(r, 'cold', 'self') or 0 for r in runs])
            ch = statistics.median([cpu_of(r, 'cold', 'children') or 0 for r in runs])
            rss = [peak_rss_mib(r) for r in runs if peak_rss_mib(r)]
            rss_text = f' / {statistics.median(rss):.0f} MiB' if rss else ''
            row.append(f'{me:.2f} + {ch:.2f} s{rss_text}')
        crows.append(row)
    out += '\n' + list_table(
        'Controller resources, cold: CPU of the controller process + of its child '
        'processes (ssh clients) during the cold call, and peak RSS of the controller '
        'process', ['tool'] + [f'N={n}' for n in ns], crows)
    return out, medians


def per_host_section() -> str:
    """CPU per host of a cold fan-out, split by where it is spent (cold-only runs)."""
    records, _ = load('cold')
    groups = group(r for r in records if not r.get('fatal') and r.get('server_cpu_s') is not None
                   and not r.get('cold_errors'))
    if not groups:
        return ''
    rows = []
    for tool in tools_in(groups):
        for n in ns_in(groups):
            runs = groups.get((tool, n))
            if not runs:
                continue
            server = statistics.median(r['server_cpu_s'] for r in runs) / n * 1000
            client = statistics.median(cpu_of(r, 'cold', 'children') or 0 for r in runs) / n * 1000
            me = statistics.median(cpu_of(r, 'cold', 'self') or 0 for r in runs) / n * 1000
            wall = statistics.median(r['cold_s'] for r in runs)
            rows.append([LABELS.get(tool, tool), str(n), f'{server:.1f} ms', f'{client:.1f} ms',
                         f'{me:.1f} ms', f'{server + client + me:.1f} ms', fmt_s(wall),
                         str(len(runs))])
    return list_table(
        'Where a cold fan-out spends CPU, per host (runs of the cold scenario alone): '
        'server side (sshd, login shell, remote python, for the whole run including '
        'close), ssh client processes, the controller process',
        ['tool', 'N', 'server', 'ssh clients', 'controller', 'total', 'wall', 'runs'], rows)


def warm_section(notes: Notes) -> tuple[str, dict[str, dict[int, float]], dict[str, dict[int, float]]]:
    groups = group(r for r in fanout_records() if r.get('warm_rounds') or r.get('fatal'))
    groups = {k: v for k, v in groups.items()
              if any(r.get('warm_rounds') for r in v) or all(r.get('fatal') for r in v)}
    if not groups:
        return '', {}, {}
    tools, ns = tools_in(groups), ns_in(groups)
    p50: dict[str, dict[int, float]] = defaultdict(dict)
    p99: dict[str, dict[int, float]] = defaultdict(dict)
    rows = []
    for tool in tools:
        row = [LABELS.get(tool, tool)]
        for n in ns:
            runs = groups.get((tool, n), [])
            a, ma = cell(runs, lambda r: r.get('warm_p50_s'), 'cold_', notes)
            b, mb = cell(runs, lambda r: r.get('warm_p99_s'), 'cold_', notes)
            rounds = [r.get('warm_rounds') for r in runs if r.get('warm_rounds')]
            if ma is not None:
                p50[tool][n] = ma
            if mb is not None:
                p99[tool][n] = mb
            if ma is None:
                row.append(a)
            else:
                row.append(f'{fmt_s(ma)} / {fmt_s(mb)} ({min(rounds)}+ rounds)')
        rows.append(row)
    out = list_table('Warm fan-out: one group call(time.time) on connected hosts, '
                     'p50 / p99 of the rounds (median over runs)',
                     ['tool'] + [f'N={n}' for n in ns], rows)
    rrows = []
    for tool in tools:
        if tool == OURS:
            continue
        rrows.append([LABELS.get(tool, tool)] + [ratio(p50[OURS].get(n), p50[tool].get(n))
                                                 for n in ns])
    out += '\n' + list_table('chopsticks ÷ tool, warm p50 (below 1: chopsticks is faster)',
                             ['vs'] + [f'N={n}' for n in ns], rrows)
    crows = []
    for tool in tools:
        row = [LABELS.get(tool, tool)]
        for n in ns:
            runs = [r for r in groups.get((tool, n), []) if r.get('warm_cpu_per_round')]
            if not runs:
                row.append('')
                continue
            me = statistics.median([r['warm_cpu_per_round']['self'] for r in runs])
            ch = statistics.median([r['warm_cpu_per_round']['children'] for r in runs])
            row.append(f'{me * 1000:.1f} + {ch * 1000:.1f} ms')
        crows.append(row)
    out += '\n' + list_table('Controller CPU per warm round: controller process + child '
                             'processes (ssh clients)', ['tool'] + [f'N={n}' for n in ns], crows)
    return out, p50, p99


def mib(v: float | None) -> str:
    return '' if v is None else f'{v / (1 << 20):.1f} MiB'


def import_section(notes: Notes) -> str:
    records, _ = load('import')
    groups = group(records)
    if not groups:
        return ''
    rows = []
    ours: dict[int, float | None] = {}
    for tool in tools_in(groups):
        for n in ns_in(groups):
            runs = groups.get((tool, n))
            if not runs:
                continue
            conn, _ = cell(runs, lambda r: r.get('connect_s'), 'connect_', notes)
            imp, imp_med = cell(runs, lambda r: r.get('import_s'), 'import_', notes)
            again, _ = cell(runs, lambda r: r.get('import_again_s'), 'import_', notes)
            sent = [r['import_wire']['sent'] for r in runs
                    if isinstance(r.get('import_wire'), dict) and not r.get('fatal')]
            sent_med = statistics.median(sent) if sent else None
            cpu = [(cpu_of(r, 'import', 'self') or 0, cpu_of(r, 'import', 'children') or 0)
                   for r in runs if not r.get('fatal')]
            cpu_text = (f'{statistics.median(c[0] for c in cpu):.2f} + '
                        f'{statistics.median(c[1] for c in cpu):.2f} s') if cpu else ''
            modules = sorted({str(r.get('import_result_sample', '')).split(' ')[-1]
                              for r in runs if r.get('import_result_sample')})
            if tool == OURS:
                ours[n] = imp_med
            rows.append([LABELS.get(tool, tool), str(n), conn, imp,
                         mib(sent_med), mib(sent_med / n) if sent_med else '', again,
                         cpu_text, ', '.join(modules), imp_med])
    for row in rows:
        row[-1] = ratio(ours.get(int(row[1])), row[-1])  # type: ignore[arg-type]
    return list_table(
        'Import-heavy first call: connect, then call a function that imports trio '
        '(served from the controller); wire bytes controller -> hosts during the call',
        ['tool', 'N', 'connect', 'first call (imports)', 'sent on the wire', 'per host',
         'second call', 'controller CPU self + children', 'modules loaded',
         'chopsticks ÷ tool'], rows)


def put_section(notes: Notes) -> str:
    records, _ = load('put')
    groups = group(records)
    if not groups:
        return ''
    rows = []
    meds: dict[tuple[str, int], float | None] = {}
    for tool in tools_in(groups):
        for n in ns_in(groups):
            runs = groups.get((tool, n))
            if not runs:
                continue
            text, med = cell(runs, lambda r: r.get('put_s'), 'put_', notes)
            meds[(tool, n)] = med
            cpu = [(cpu_of(r, 'put', 'self') or 0, cpu_of(r, 'put', 'children') or 0)
                   for r in runs if not r.get('fatal')]
            cpu_text = (f'{statistics.median(c[0] for c in cpu):.2f} + '
                        f'{statistics.median(c[1] for c in cpu):.2f} s') if cpu else ''
            rss = [peak_rss_mib(r) for r in runs if peak_rss_mib(r)]
            rate = f'{10 * n / med:.0f} MiB/s' if med else ''
            rows.append([LABELS.get(tool, tool), str(n), text, rate, cpu_text,
                         f'{statistics.median(rss):.0f} MiB' if rss else '', ''])
    for row in rows:
        n = int(row[1])
        tool = next(t for t in LABELS if LABELS[t] == row[0]) if row[0] in LABELS.values() \
            else row[0]
        row[-1] = ratio(meds.get((OURS, n)), meds.get((tool, n)))
    return list_table('put of a 10 MiB file to every host (connected beforehand)',
                      ['tool', 'N', 'time', 'aggregate rate', 'controller CPU self + children',
                       'peak RSS', 'chopsticks ÷ tool'], rows)


def locust_section(notes: Notes) -> str:
    records, _ = load('locust')
    groups = group(records)
    if not groups:
        return ''
    rows = []
    for (tool, n), runs in sorted(groups.items()):
        good = [r for r in runs if not r.get('fatal') and r.get('rps') is not None]
        errs = [notes.ref(f"locust {tool} N={n}: {r['fatal']}") for r in runs if r.get('fatal')]
        if not good:
            rows.append([tool, str(n), 'fails ' + ' '.join(errs), '', '', '', '', '', ''])
            continue

        def med(key: str, rs: list[dict[str, Any]] = good) -> Any:
            vals = [r[key] for r in rs if r.get(key) is not None]
            return statistics.median(vals) if vals else None

        connect = [r['connect']['p50_ms'] for r in good if isinstance(r.get('connect'), dict)]
        cpu = statistics.median(r['rusage']['locust_user'] + r['rusage']['locust_sys']
                                for r in good)
        rss = statistics.median(r['rusage']['locust_maxrss_kb'] for r in good) / 1024
        fails = sum(r.get('failures') or 0 for r in good)
        rows.append([LABELS.get(tool, tool) + ' in locust', f'{n} users on {n} hosts',
                     f"{med('rps'):.0f}", f"{med('p50_ms'):g} ms", f"{med('p99_ms'):g} ms",
                     f'{statistics.median(connect):g} ms' if connect else '',
                     str(fails) + (' ' + ' '.join(errs) if errs else ''),
                     f'{cpu:.1f} s', f'{rss:.0f} MiB'])
    t = good[0].get('locust_time', '') if good else ''
    return list_table(f'locust, headless for {t}: tunnel.call(time.time) in a loop per user '
                      "(from locust's own CSV report; median over runs)",
                      ['', 'load', 'requests/s', 'p50', 'p99', 'connect p50', 'failures',
                       'CPU (locust process)', 'peak RSS'], rows)


def plot(medians: dict[str, dict[int, float]], path: Path, title: str, ylabel: str,
         upper: dict[str, dict[int, float]] | None = None) -> bool:
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib missing: no plots (bash bench/setup_peers.sh main)', file=sys.stderr)
        return False
    if not medians:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    for tool in [t for t in ORDER if t in medians] + sorted(set(medians) - set(ORDER)):
        pts = sorted(medians[tool].items())
        if not pts:
            continue
        xs, ys = zip(*pts)
        style = {'linewidth': 2.6, 'color': 'black'} if tool == OURS else {}
        if tool == 'floor':
            style = {'linestyle': ':', 'color': 'grey'}
        line, = ax.plot(xs, ys, marker='o', label=LABELS.get(tool, tool), **style)
        if upper and upper.get(tool):
            ups = sorted(upper[tool].items())
            ax.plot([x for x, _ in ups], [y for _, y in ups], linestyle='--',
                    color=line.get_color(), alpha=0.6, linewidth=1)
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('hosts (N)')
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def machine_section(info: dict[str, Any]) -> str:
    if not info:
        return ''
    peers = info.get('peers', {})
    rows = [
        ['date', info.get('date', '')],
        ['CPU', f"{info.get('nproc')} cores ({info.get('cpu', '')}), shared with other work"],
        ['memory', f"{info.get('memory_gib')} GiB"],
        ['kernel / OS', f"{info.get('kernel')} / {info.get('os')}"],
        ['controller python', f"{info.get('controller_python')} (gevent {info.get('gevent')}, "
                              f"locust {info.get('locust')})"],
        ['remote python', f"/usr/bin/python3: {info.get('remote_python')}"],
        ['ssh client / sshd', f"{info.get('ssh')} / {info.get('sshd')}"],
        ['chopsticks commit', str(info.get('chopsticks_commit'))],
        ['open files limit', str(info.get('open_files_limit'))],
        ['load average at start', ' '.join(info.get('loadavg_at_start', []))],
    ]
    for venv in ('classic', 'mitogen', 'pssh', 'fabric', 'asyncssh'):
        if venv in peers:
            rows.append([f'venv {venv}', f"python {peers[venv]}: {peers.get(venv + '_packages')}"])
    return list_table('The machine', None, rows, [25, 75])


INTRO = """\
Benchmarks
==========

chopsticks measured side by side with the tools people compare it with, on the
same loopback fleet, in the same run, doing the same job. Generated by
``bench/report.py`` from ``bench/results/*.json``; how to run it again is in
``bench/README.rst`` (one command: ``bash bench/setup_peers.sh && python
bench/run.py && python bench/report.py``).

**The fleet.** N "hosts" are N loopback addresses (127.0.1.1, ...) served by
real OpenSSH ``sshd`` processes (16 addresses each) on this machine, with a lean
login shell (``/bin/sh``) and remote interpreter ``/usr/bin/python3``; key
exchange curve25519-sha256, ed25519 keys. The controller, the ssh clients, every
sshd and every remote python share the same 2 cores, so a figure measures the
whole system: server-side work (sshd, login, python start) is most of a cold
fan-out.

**The job.** Every tool runs ``time.time()`` on each host through
``/usr/bin/python3`` and brings the value back. Tools that only run commands
(parallel-ssh, Fabric, asyncssh) run ``/usr/bin/python3 -c "import
time;print(time.time())"`` and parse the output; they keep their SSH connections
between warm rounds but start a new python per host per round. The floor is
bare ``ssh host /usr/bin/python3 -c pass`` through a pool of the same size: the
least work any tool must do. Concurrency is 100 wherever the tool has a bound
(chopsticks ``Group(concurrency=100)``, mitogen's connect threads, the
parallel-ssh pool, the asyncssh semaphore, the floor's pool); classic chopsticks
and Fabric's ThreadingGroup have none and start every host at once.

**Measurements.** Wall time with ``time.perf_counter``; each figure is the
median over the runs (3 unless the cell says otherwise). Controller CPU is the
runner process (``getrusage``) plus its child processes (the ssh clients,
counted from ``/proc`` while alive and by ``RUSAGE_CHILDREN`` once reaped);
peak RSS is ``ru_maxrss`` of the runner process. Bytes are counted on the wire:
the kernel's tcp_info (``ss -tin``) of the connections to the fleet's port,
before and after the phase, so SSH encryption and compression are included. Each
run is a separate process with a deadline (killed and recorded as a timeout).
"""


def main(argv: list[str] | None = None) -> int:
    global RESULTS, DOC, STATIC
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--results', type=Path, default=RESULTS, help='default: bench/results')
    ap.add_argument('--doc', type=Path, default=DOC, help='default: docs/benchmarks.rst')
    args = ap.parse_args(argv)
    RESULTS, DOC = args.results, args.doc
    STATIC = DOC.parent / '_static' / 'bench'
    notes = Notes()
    _, info = load('fanout')
    for name in ('cold', 'warm', 'import', 'put', 'locust'):
        if not info:
            _, info = load(name)
    parts = [INTRO, machine_section(info)]
    cold, cold_med = cold_section(notes)
    warm, p50, p99 = warm_section(notes)
    if cold:
        parts.append(heading('1. Cold fan-out', '-'))
        if plot(cold_med, STATIC / 'cold.png', 'Cold fan-out: Group.call(time.time)',
                'seconds (median)'):
            parts.append('.. image:: _static/bench/cold.png\n   :alt: cold fan-out time '
                         'against N for each tool\n')
        parts.append(cold)
        per_host = per_host_section()
        if per_host:
            parts.append('\nOn 2 cores, a cold fan-out is bound by CPU: the sum of the '
                         'columns below times N, divided by 2, is close to the wall time.\n')
            parts.append(per_host)
    if warm:
        parts.append(heading('2. Warm fan-out', '-'))
        parts.append('Repeated group calls on connected hosts. The rounds of one run are '
                     'timed one by one (at most 50, at least 3, no new round after 20 s); '
                     'p50 and p99 are over the rounds of a run, then the median over runs. '
                     'With few rounds, p99 is close to the slowest round. The floor keeps no '
                     'connection, so its warm round would be its cold figure again; it is '
                     'not run.\n')
        if plot(p50, STATIC / 'warm.png', 'Warm fan-out: p50 (solid) and p99 (dashed)',
                'seconds per round', p99):
            parts.append('.. image:: _static/bench/warm.png\n   :alt: warm round time '
                         'against N for each tool\n')
        parts.append(warm)
    imp = import_section(notes)
    if imp:
        parts.append(heading('3. Import-heavy first call', '-'))
        parts.append('The call imports ``trio`` 0.22.2 (pure Python, with attrs, idna, '
                     'outcome, sniffio and sortedcontainers: about 1 MiB of source in '
                     '~80 files), which the remote python does not have: each tool serves '
                     'it from the controller (one copy in ``bench/.venvs/importpkg``, first '
                     'on every runner\'s sys.path). Command-only tools cannot ship code and '
                     'are left out. "modules loaded" is how many entries ``sys.modules`` '
                     'gained on the remote (stdlib included).\n')
        parts.append(imp)
    put = put_section(notes)
    if put:
        parts.append(heading('4. put of a 10 MiB file', '-'))
        parts.append('chopsticks ``Group.put(local, remote)``; classic chopsticks '
                     '``Group.put``; mitogen ``FileService``; parallel-ssh ``copy_file`` '
                     '(SFTP); Fabric ``ThreadingGroup.put`` (SFTP); asyncssh SFTP ``put``; '
                     "the floor ``ssh host 'cat > PATH' < FILE``. Connections are made "
                     'before the clock starts. All hosts share this machine\'s disk.\n')
        parts.append(put)
    loc = locust_section(notes)
    if loc:
        parts.append(heading('5. locust', '-'))
        parts.append('``bench/locustfile.py``: each locust user holds one chopsticks tunnel '
                     'to its own host and calls ``tunnel.call(time.time)`` in a loop '
                     '(``wait_time = constant(0)``), reporting each call with '
                     '``events.request.fire``. chopsticks runs inside locust\'s gevent loop '
                     'natively. Connects are reported as their own request type and '
                     'excluded from the call figures.\n')
        parts.append(loc)
    if notes.items:
        parts.append(heading('Errors and failures', '-'))
        parts.append('The numbered notes in the tables:\n\n' + notes.rst())
    if FINDINGS.exists():
        parts.append(FINDINGS.read_text())
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text('\n'.join(p.rstrip() + '\n' for p in parts if p))
    print(f'wrote {DOC}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
