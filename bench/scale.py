"""Scale of one controller: cold and warm group calls over many tunnels.

    python bench/scale.py                                   # local agents, N = 100..2000
    python bench/scale.py --transport ssh -n 100 500 1000   # OpenSSH, curve25519
    python bench/scale.py --transport paramiko -n 100 500
    python bench/scale.py --transport ssh --kex default -n 100

Each run is a fresh process (so its memory and CPU are its own). For each N,
the median of ``--runs`` runs of: the cold group call (start,
bootstrap, call ``time.time``), p50 and p99 of ``--warm`` warm group calls,
controller CPU (this process, user+sys) per host for the cold call, the CPU of
its child processes (ssh clients or local agents, counted once reaped), and
RSS growth per tunnel. SSH transports run against a loopback fleet of real
sshd processes (tests/fleet), started and stopped here.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chopsticks.group import Group  # noqa: E402
from chopsticks.tunnel import BaseTunnel, Local  # noqa: E402


def cpu(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def rss_kib() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') // 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def one_run(make: Callable[[int], list[BaseTunnel]], n: int, warm_rounds: int,
            concurrency: int | None) -> dict[str, Any]:
    gc.collect()
    rss0 = rss_kib()
    children0 = cpu(resource.RUSAGE_CHILDREN)
    group = Group(make(n), concurrency=concurrency)
    try:
        c0, t0 = cpu(), time.perf_counter()
        cold = group.call(time.time)
        cold_s = time.perf_counter() - t0
        cold_cpu = cpu() - c0
        failures = sum(1 for _ in cold.failures())
        errors = sorted({err.msg[:120] for _, err in cold.failures()})[:3]
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
    children = cpu(resource.RUSAGE_CHILDREN) - children0
    return {'n': n, 'cold_s': cold_s, 'cold_cpu_s': cold_cpu,
            'cold_cpu_ms_per_host': cold_cpu / n * 1000,
            'children_cpu_ms_per_host': children / n * 1000,
            'warm_p50_s': statistics.median(warm) if warm else 0.0,
            'warm_p99_s': percentile(warm, 0.99) if warm else 0.0,
            'warm_cpu_ms_per_round': warm_cpu * 1000,
            'rss_kib_per_tunnel': (rss1 - rss0) / n, 'close_s': close_s,
            'failures': failures, 'errors': errors}


def local_maker(python: str | None) -> Callable[[int], list[BaseTunnel]]:
    return lambda n: [Local(f'agent{i}', python=python) for i in range(n)]


def ssh_maker(kind: str, fleet: Any, kex: str,
              python: str | None) -> Callable[[int], list[BaseTunnel]]:
    if kind == 'ssh':
        from chopsticks.tunnel import SSHTunnel as cls
    else:
        from chopsticks.tunnel import ParamikoTunnel as cls
    options = {} if kex == 'default' else {'KexAlgorithms': 'curve25519-sha256'}
    if kind == 'ssh':
        options['ControlMaster'] = 'no'

    def make(n: int) -> list[BaseTunnel]:
        return [cls(host, user=fleet.user, port=fleet.port,
                    identity_file=fleet.identity_file, known_hosts=fleet.known_hosts,
                    connect_timeout=60, python=python, ssh_options=dict(options))
                for host in fleet.hosts[:n]]
    return make


class FleetInfo:
    """What a child run needs of the parent's fleet."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.__dict__.update(info)


def child(config: dict[str, Any]) -> None:
    """One run in this fresh process; print its figures as JSON."""
    if config['transport'] == 'local':
        make = local_maker(config['python'])
    else:
        make = ssh_maker(config['transport'], FleetInfo(config['fleet']), config['kex'],
                         config['python'])
    print(json.dumps(one_run(make, config['n'], config['warm'], config['concurrency'])))


def run_child(config: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, '--child'], input=json.dumps(config),
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f'run failed: {out.stderr[-2000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:] == ['--child']:
        child(json.load(sys.stdin))
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--transport', choices=['local', 'ssh', 'paramiko'], default='local')
    parser.add_argument('-n', type=int, nargs='+', default=None)
    parser.add_argument('-r', '--runs', type=int, default=3)
    parser.add_argument('--warm', type=int, default=20, help='warm rounds per run')
    parser.add_argument('--concurrency', type=int, default=None,
                        help='default: 500 for local, 100 for SSH')
    parser.add_argument('--kex', choices=['curve25519', 'default'], default='curve25519')
    parser.add_argument('--python', default=None, help='remote interpreter')
    parser.add_argument('--json', help='write the results to this file')
    args = parser.parse_args()
    sizes = args.n or ([100, 500, 1000, 2000] if args.transport == 'local'
                       else [100, 500, 1000])
    concurrency = args.concurrency or (500 if args.transport == 'local' else 100)
    fleet = None
    config: dict[str, Any] = {'transport': args.transport, 'warm': args.warm,
                              'concurrency': concurrency, 'kex': args.kex,
                              'python': args.python, 'fleet': None}
    if args.transport != 'local':
        from tests.fleet.sshd import SSHFleet
        workdir = tempfile.mkdtemp(prefix='chopsticks-bench-fleet-')
        fleet = SSHFleet(max(sizes), workdir)
        config['fleet'] = {'hosts': fleet.hosts, 'user': fleet.user, 'port': fleet.port,
                           'identity_file': str(fleet.identity_file),
                           'known_hosts': str(fleet.known_hosts)}
    rows = []
    label = args.transport + ('' if args.transport == 'local' else f' ({args.kex})')
    print(f'{label}, concurrency {concurrency}, median of {args.runs} runs')
    print(f'{"N":>6} {"cold s":>7} {"ctl ms/host":>11} {"child ms/host":>13} '
          f'{"warm p50 ms":>11} {"warm p99 ms":>11} {"KiB/tunnel":>10} {"fail":>5}')
    try:
        for n in sizes:
            runs = [run_child({**config, 'n': n}) for _ in range(args.runs)]
            med: dict[str, Any] = {key: statistics.median(r[key] for r in runs)
                                   for key in runs[0] if key != 'errors'}
            med['errors'] = sorted({e for r in runs for e in r['errors']})[:3]
            med['runs'] = runs
            rows.append(med)
            print(f'{n:>6} {med["cold_s"]:>7.2f} {med["cold_cpu_ms_per_host"]:>11.2f} '
                  f'{med["children_cpu_ms_per_host"]:>13.2f} '
                  f'{med["warm_p50_s"] * 1000:>11.1f} {med["warm_p99_s"] * 1000:>11.1f} '
                  f'{med["rss_kib_per_tunnel"]:>10.1f} {int(med["failures"]):>5}', flush=True)
            for error in med['errors']:
                print(f'       error: {error}')
    finally:
        if fleet is not None:
            fleet.stop()
    by_n = {r['n']: r for r in rows}
    if 1000 in by_n and 2000 in by_n:
        ratio = by_n[2000]['cold_cpu_s'] / by_n[1000]['cold_cpu_s']
        print(f'controller CPU of the cold call, 2000 vs 1000 tunnels: {ratio:.2f}x')
    if args.json:
        Path(args.json).write_text(json.dumps({'transport': label,
                                               'concurrency': concurrency,
                                               'rows': rows}, indent=1))


if __name__ == '__main__':
    main()
