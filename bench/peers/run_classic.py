"""Classic chopsticks 1.0 from PyPI (same import name as ours: own venv, own process).

``Group(tunnels).call(time.time)``. Its ``SSHTunnel`` takes no ssh options,
so a subclass puts ``-F <fleet ssh_config>`` in front of the host, which is
what a user of 1.0 would do (or write ~/.ssh/config). 1.0's Group has no
concurrency bound: it starts every ssh at once, and its I/O loop is
``select()``, which raises ``ValueError: filedescriptor out of range`` once a
pipe's fd passes 1023 (three pipes per host).
"""
import os
import sys
import time

import _harness


def setup(spec):
    sys.path.insert(0, spec['import_path'])  # the heavy package of scenario 3
    from chopsticks.tunnel import SSHTunnel
    from chopsticks.group import Group

    class FleetTunnel(SSHTunnel):
        python3 = spec['python']

        def cmd_args(self):
            args = super(FleetTunnel, self).cmd_args()
            return [args[0], '-F', spec['ssh_config']] + args[1:]

    return Group, FleetTunnel


def outcome(rec, result, check, prefix):
    errors = {}
    ok = 0
    for host, value in result.items():
        msg = getattr(value, 'msg', None)
        if msg is not None:
            text = ' '.join(str(msg).split())[:300]
            errors[text] = errors.get(text, 0) + 1
        elif check(value):
            ok += 1
        else:
            text = ('unexpected result %r' % (value,))[:300]
            errors[text] = errors.get(text, 0) + 1
    rec.set_outcome(ok, errors, prefix)


def is_time(value):
    return isinstance(value, float) and abs(value - time.time()) < _harness.CLOCK_SLACK


def fanout(spec, rec):
    Group, Tunnel = setup(spec)
    rec.note('classic: no concurrency bound (every ssh starts at once); select() loop')
    rec['concurrency'] = None
    start = _harness.phase_start()
    group = Group([Tunnel(h) for h in spec['hosts']])
    try:
        result = group.call(time.time)
        rec.end_phase('cold', start)
        outcome(rec, result, is_time, 'cold_')
        rec['rss_after_cold_kb'] = _harness.rss_kb()
        rec['fds_after_cold'] = _harness.open_fds()

        def one_round():
            res = group.call(time.time)
            return {h: (getattr(v, 'msg', v)) for h, v in res.items()}

        _harness.warm_rounds(spec, rec, one_round)
    finally:
        t0 = time.perf_counter()
        group.close()
        rec['close_s'] = round(time.perf_counter() - t0, 4)


def import_(spec, rec):
    Group, Tunnel = setup(spec)
    import bench_jobs
    group = Group([Tunnel(h) for h in spec['hosts']])
    try:
        start = _harness.phase_start()
        group.connect()
        rec.end_phase('connect', start)
        errs = {}
        for host, err in group.connection_errors.items():
            errs[str(err.msg)[:300]] = errs.get(str(err.msg)[:300], 0) + 1
        rec.set_outcome(len(spec['hosts']) - sum(errs.values()), errs, 'connect_')
        start = _harness.phase_start()
        result = group.call(bench_jobs.import_heavy)
        rec.end_phase('import', start)
        outcome(rec, result, lambda v: str(v).startswith(bench_jobs.HEAVY_VERSION + ' '),
                'import_')
        rec['import_result_sample'] = str(next(iter(result.values())))[:300]
        start = _harness.phase_start()
        again = group.call(bench_jobs.import_heavy)
        rec.end_phase('import_again', start)
        outcome(rec, again, lambda v: True, 'import_again_')
    finally:
        group.close()


def put(spec, rec):
    Group, Tunnel = setup(spec)
    group = Group([Tunnel(h) for h in spec['hosts']])
    size = os.path.getsize(spec['put_file'])
    try:
        start = _harness.phase_start()
        group.connect()
        rec.end_phase('connect', start)
        start = _harness.phase_start()
        # remote_path=None: a temporary file per host. A fixed path would make
        # every "host" of this one-machine fleet write the same 'PATH~chopsticks'
        # temporary file at once.
        result = group.put(spec['put_file'])
        rec.end_phase('put', start)
        outcome(rec, result, lambda v: isinstance(v, dict) and v.get('size') == size, 'put_')
        rec['remote_paths'] = [v['remote_path'] for v in result.values()
                               if isinstance(v, dict) and 'remote_path' in v]
    finally:
        group.close()
    rec.note('classic put: Group.put(local) into a temporary file per host (its fixed '
             'PATH~chopsticks temporary name would collide on a one-machine fleet), '
             '10 KiB chunks, SHA-1 checked')


if __name__ == '__main__':
    _harness.run('classic', {'fanout': fanout, 'import': import_, 'put': put},
                 version='1.0')
