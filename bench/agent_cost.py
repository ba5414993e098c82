"""What one chopsticks agent costs where it runs, against a bare interpreter start.

    python3 bench/agent_cost.py [--python /usr/bin/python3] [--runs 30]

Every host of a cold fan-out pays this on the remote side, so on a fleet
where the hosts share the controller's cores (the loopback benchmark) it
adds N times this difference to the CPU bill. Local tunnels are used: no
ssh, only the interpreter and the agent. Also shows how much of the agent's
start is compiling stage 2 (its source, shipped compressed) against loading
the same code from marshal.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chopsticks import _bootstrap  # noqa: E402
from chopsticks.tunnel import Local  # noqa: E402


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(label: str, fn, runs: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        fn()
    c0, t0 = children_cpu(), time.perf_counter()
    for _ in range(runs):
        fn()
    cpu = (children_cpu() - c0) / runs * 1000
    wall = (time.perf_counter() - t0) / runs * 1000
    print(f'{label:<58} {cpu:6.1f} ms CPU  {wall:6.1f} ms wall')


COMPILE_PROBE = r'''
import ast, marshal, sys, time, zlib
src = zlib.decompress(sys.stdin.buffer.read())
mods = [n.value for n in ast.walk(ast.parse(src))
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and len(n.value) > 200]
t = time.process_time()
for _ in range(20):
    codes = [compile(m, 'agent', 'exec') for m in mods]
compile_ms = (time.process_time() - t) / 20 * 1000
data = [marshal.dumps(c) for c in codes]
t = time.process_time()
for _ in range(20):
    [marshal.loads(d) for d in data]
load_ms = (time.process_time() - t) / 20 * 1000
print('stage 2: %d modules, %d bytes of source; compile %.2f ms, from marshal %.2f ms '
      '(%d bytes marshalled, %d compressed)'
      % (len(mods), sum(map(len, mods)), compile_ms, load_ms, sum(map(len, data)),
         len(zlib.compress(b''.join(data), 9))))
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--python', default='/usr/bin/python3')
    ap.add_argument('--runs', type=int, default=30)
    args = ap.parse_args()
    py = args.python

    def run(*argv: str) -> None:
        subprocess.run([py, *argv], stdout=subprocess.DEVNULL, check=True)

    def agent() -> None:
        tunnel = Local('cost', python=py)
        tunnel.call(time.time)
        tunnel.close()

    measure(f'{py} -c pass', lambda: run('-c', 'pass'), args.runs)
    measure(f'{py} -E -S -c pass', lambda: run('-E', '-S', '-c', 'pass'), args.runs)
    measure(f'{py} -c "import time;print(time.time())"',
            lambda: run('-c', 'import time;print(time.time())'), args.runs)
    measure('chopsticks agent: connect, call(time.time), close', agent, args.runs)
    stage2 = _bootstrap.stage2()
    print(f'stage 2: {len(stage2)} bytes compressed, {len(zlib.decompress(stage2))} bytes')
    subprocess.run([py, '-E', '-S', '-c', COMPILE_PROBE], input=stage2, check=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
