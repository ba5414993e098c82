"""Scale of one controller over many local agents: cold and warm group calls.

    python bench/local_scale.py                 # N = 100 500 1000 2000, 3 runs each
    python bench/local_scale.py -n 500 -r 5 --warm 20

For each N: the cold group call (start, bootstrap, call), p50/p99 of warm group
calls, controller CPU seconds (user+sys of this process: the agents are
children and not counted) per host, and RSS growth per tunnel. Prints a table
and writes JSON with --json.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chopsticks.group import Group  # noqa: E402
from chopsticks.tunnel import Local  # noqa: E402


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_kib() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') // 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def one_run(n: int, warm_rounds: int, concurrency: int | None, python: str | None) -> dict:
    gc.collect()
    rss0 = rss_kib()
    group = Group([Local(f'agent{i}', python=python) for i in range(n)],
                  concurrency=concurrency)
    try:
        c0, t0 = cpu(), time.perf_counter()
        cold = group.call(time.time)
        cold_s = time.perf_counter() - t0
        cold_cpu = cpu() - c0
        failures = sum(1 for _ in cold.failures())
        rss1 = rss_kib()
        warm = []
        c1 = cpu()
        for _ in range(warm_rounds):
            t = time.perf_counter()
            result = group.call(time.time)
            warm.append(time.perf_counter() - t)
            failures += sum(1 for _ in result.failures())
        warm_cpu = (cpu() - c1) / max(warm_rounds, 1)
    finally:
        t = time.perf_counter()
        group.close()
        close_s = time.perf_counter() - t
    return {'n': n, 'cold_s': cold_s, 'cold_cpu_s': cold_cpu,
            'cold_cpu_ms_per_host': cold_cpu / n * 1000,
            'warm_p50_s': statistics.median(warm), 'warm_p99_s': percentile(warm, 0.99),
            'warm_cpu_ms_per_round': warm_cpu * 1000,
            'rss_kib_per_tunnel': (rss1 - rss0) / n, 'close_s': close_s,
            'failures': failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-n', type=int, nargs='+', default=[100, 500, 1000, 2000])
    parser.add_argument('-r', '--runs', type=int, default=3)
    parser.add_argument('--warm', type=int, default=20, help='warm rounds per run')
    parser.add_argument('--concurrency', type=int, default=500)
    parser.add_argument('--python', default=None)
    parser.add_argument('--json', help='write the runs to this file')
    args = parser.parse_args()
    rows = []
    print(f'{"N":>6} {"cold s":>8} {"cpu ms/host":>11} {"warm p50 ms":>11} '
          f'{"warm p99 ms":>11} {"KiB/tunnel":>10} {"fail":>5}')
    for n in args.n:
        runs = [one_run(n, args.warm, args.concurrency, args.python) for _ in range(args.runs)]
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        med['runs'] = runs
        rows.append(med)
        print(f'{n:>6} {med["cold_s"]:>8.2f} {med["cold_cpu_ms_per_host"]:>11.2f} '
              f'{med["warm_p50_s"] * 1000:>11.1f} {med["warm_p99_s"] * 1000:>11.1f} '
              f'{med["rss_kib_per_tunnel"]:>10.1f} {int(med["failures"]):>5}', flush=True)
    if len(rows) > 1:
        by_n = {r['n']: r for r in rows}
        if 1000 in by_n and 2000 in by_n:
            ratio = by_n[2000]['cold_cpu_s'] / by_n[1000]['cold_cpu_s']
            print(f'controller CPU of a cold call, 2000 vs 1000 agents: {ratio:.2f}x')
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == '__main__':
    main()
