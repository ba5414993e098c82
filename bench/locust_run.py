"""Scenario 5: run ``bench/locustfile.py`` headless against the fleet and read locust's CSV.

Used by ``bench/run.py locust``. Each run is one ``locust`` process in its
own process group (killed at the deadline); its CPU and peak RSS come from
``wait4`` (the locust process and whatever it waited for).
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RAW = BENCH / 'results' / 'raw'

#: Columns of locust's ``_stats.csv`` kept in the record, with our names.
COLUMNS = {
    'Request Count': 'requests', 'Failure Count': 'failures', 'Requests/s': 'rps',
    'Failures/s': 'failures_per_s', 'Average Response Time': 'avg_ms',
    'Min Response Time': 'min_ms', 'Max Response Time': 'max_ms',
    '50%': 'p50_ms', '90%': 'p90_ms', '95%': 'p95_ms', '99%': 'p99_ms', '99.9%': 'p999_ms',
}


def _number(text: str) -> float | int | None:
    if text in ('', 'N/A'):
        return None
    value = float(text)
    return int(value) if value.is_integer() else value


def read_stats(prefix: str) -> dict[str, dict[str, Any]]:
    """Rows of ``<prefix>_stats.csv`` keyed by request type (``call``, ``connect``, ``Aggregated``)."""
    rows = {}
    with open(prefix + '_stats.csv', newline='') as f:
        for row in csv.DictReader(f):
            key = row['Type'] or row['Name']
            rows[key] = {ours: _number(row[theirs]) for theirs, ours in COLUMNS.items()
                         if theirs in row}
    return rows


def run_once(fleet: Any, n: int, rep: int, args: Any, transport: str = 'openssh') -> dict[str, Any]:
    tool = 'chopsticks' if transport == 'openssh' else 'chopsticks-paramiko'
    record: dict[str, Any] = {'tool': tool, 'label': f'chopsticks ({transport}) in locust',
                              'scenario': 'locust', 'n': n, 'rep': rep,
                              'locust_time': args.locust_time}
    RAW.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='chopsticks-locust-') as tmp:
        spec = {'hosts': fleet.hosts[:n], 'user': fleet.user, 'port': fleet.port,
                'identity_file': fleet.identity_file, 'known_hosts': fleet.known_hosts,
                'python': '/usr/bin/python3', 'ssh_options': fleet.ssh_options,
                'connect_timeout_s': args.connect_timeout, 'transport': transport}
        spec_path = os.path.join(tmp, 'fleet.json')
        with open(spec_path, 'w') as f:
            json.dump(spec, f)
        prefix = os.path.join(tmp, 'locust')
        argv = [sys.executable, '-m', 'locust', '-f', str(BENCH / 'locustfile.py'),
                '--headless', '-u', str(n), '-r', str(n), '-t', args.locust_time,
                '--stop-timeout', '10', '--csv', prefix, '--only-summary',
                '--exit-code-on-error', '0', '--loglevel', 'WARNING']
        env = dict(os.environ, CHOPSTICKS_BENCH_FLEET=spec_path)
        log_path = RAW / f'locust-{tool}-{n}-{rep}.log'
        t0 = time.monotonic()
        with open(log_path, 'w') as log:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 cwd=str(ROOT), env=env, start_new_session=True)
            deadline = t0 + args.timeout
            status = None
            while status is None:
                pid, status_word, usage = os.wait4(p.pid, os.WNOHANG)
                if pid == p.pid:
                    status = os.waitstatus_to_exitcode(status_word)
                    p.returncode = status
                    break
                if time.monotonic() > deadline:
                    os.killpg(p.pid, signal.SIGKILL)
                    _, status_word, usage = os.wait4(p.pid, 0)
                    record['fatal'] = f'timeout: killed after {args.timeout:g}s'
                    status = os.waitstatus_to_exitcode(status_word)
                    p.returncode = status
                    break
                time.sleep(0.2)
        record['elapsed_s'] = round(time.monotonic() - t0, 3)
        record['exit_status'] = status
        record['rusage'] = {'locust_user': usage.ru_utime, 'locust_sys': usage.ru_stime,
                            'locust_maxrss_kb': usage.ru_maxrss}
        try:
            rows = read_stats(prefix)
        except (OSError, KeyError, ValueError) as exc:
            record.setdefault('fatal', f'no locust stats: {exc}; see '
                                       f'{log_path.relative_to(ROOT)}')
            return record
        for key, row in rows.items():
            record[key.lower()] = row
        call = rows.get('call', {})
        for key in ('rps', 'p50_ms', 'p99_ms', 'requests', 'failures'):
            record[key] = call.get(key)
        try:
            with open(prefix + '_failures.csv', newline='') as f:
                failures = list(csv.DictReader(f))
            if failures:
                record['failure_samples'] = [
                    {'type': r.get('Method'), 'error': (r.get('Error') or '')[:300],
                     'count': _number(r.get('Occurrences') or '0')} for r in failures[:5]]
        except OSError:
            pass
    return record


def run_locust(fleet: Any, ns: list[int], args: Any) -> list[dict[str, Any]]:
    from run import stop_strays, summary_line, wait_fleet_idle
    records = []
    for n in ns:
        for rep in range(1, args.reps + 1):
            record = run_once(fleet, n, rep, args)
            strays = stop_strays(fleet)
            if strays:
                record['strays_stopped'] = len(strays)
            wait_fleet_idle(fleet)
            records.append(record)
            print(summary_line(record), flush=True)
    return records
