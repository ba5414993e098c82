"""``python -m chopsticks``: a fan-out over a few local agents, with timings.

The embedded default job of the README's first command: no SSH needed.
``python -m chopsticks -n 20`` runs it over 20 agents.
"""
from __future__ import annotations

import argparse
import sys
import time

from .facts import hostname, python_version
from .group import Group
from .tunnel import Local


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m chopsticks', description=__doc__)
    parser.add_argument('-n', '--hosts', type=int, default=5,
                        help='number of local agents (default 5)')
    parser.add_argument('--python', default=None,
                        help='remote interpreter (default /usr/bin/python3)')
    args = parser.parse_args(argv)

    group = Group([Local(f'local{i}', python=args.python) for i in range(args.hosts)])
    try:
        t0 = time.perf_counter()
        cold = group.call(time.time)
        t1 = time.perf_counter()
        warm = group.call(time.time)
        t2 = time.perf_counter()
        versions = group.call(python_version, short=True)
        names = group.call(hostname)
        for host, value in warm.items():
            print(f'{host:>10}  time={value!r:<20} python={versions[host]!s:<6} '
                  f'hostname={names[host]!s}')
        print(f'cold group call ({len(group)} agents: start, bootstrap, call): '
              f'{(t1 - t0) * 1000:.1f} ms')
        print(f'warm group call: {(t2 - t1) * 1000:.1f} ms')
        failures = list(cold.failures()) + list(warm.failures())
        for host, err in failures:
            print(f'{host}: FAILED {err.msg}', file=sys.stderr)
        return 1 if failures else 0
    finally:
        group.close()


if __name__ == '__main__':
    sys.exit(main())
