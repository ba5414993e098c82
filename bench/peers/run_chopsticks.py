"""chopsticks (this repository): ``Group(hosts, concurrency=100, tunnel_class=...)``.

Runs in the controller python with the repository root first on sys.path.
``spec['transport']`` picks ``SSHTunnel`` (OpenSSH client subprocess per
host, the default) or ``ParamikoTunnel`` (in-process).
"""
import os
import sys
import time

import _harness

SPEC_KEYS_COPIED = ('KexAlgorithms', 'HostKeyAlgorithms', 'GlobalKnownHostsFile',
                    'CheckHostIP', 'UpdateHostKeys', 'IdentitiesOnly', 'AddressFamily')


class Unsupported(Exception):
    pass


def setup(spec):
    sys.path.insert(0, spec['repo_root'])
    sys.path.insert(0, spec['import_path'])  # the heavy package of scenario 3
    from chopsticks.group import Group
    from chopsticks import tunnel
    transport = spec.get('transport', 'openssh')
    if transport == 'paramiko' and not hasattr(tunnel, 'ParamikoTunnel'):
        raise Unsupported('ParamikoTunnel is not in this checkout of chopsticks')
    cls = tunnel.ParamikoTunnel if transport == 'paramiko' else tunnel.SSHTunnel
    options = dict(
        user=spec['user'], port=spec['port'], python=spec['python'],
        identity_file=spec['identity_file'], known_hosts=spec['known_hosts'],
        connect_timeout=spec['connect_timeout_s'],
    )
    if transport == 'openssh':
        options['ssh_options'] = {k: v for k, v in spec['ssh_options'].items()
                                  if k in SPEC_KEYS_COPIED}
    return Group, cls, options


def version(spec):
    import chopsticks
    return chopsticks.__version__


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
            text = 'unexpected result %r' % (value,)
            errors[text[:300]] = errors.get(text[:300], 0) + 1
    rec.set_outcome(ok, errors, prefix)


def is_time(value):
    return isinstance(value, float) and abs(value - time.time()) < _harness.CLOCK_SLACK


def as_times(result):
    return {h: (v if not hasattr(v, 'msg') else v.msg) for h, v in result.items()}


def fanout(spec, rec):
    Group, cls, options = setup(spec)
    rec['version'] = version(spec)
    start = _harness.phase_start()
    group = Group(spec['hosts'], concurrency=spec['concurrency'], tunnel_class=cls, **options)
    result = group.call(time.time)
    rec.end_phase('cold', start)
    outcome(rec, result, is_time, 'cold_')
    rec['rss_after_cold_kb'] = _harness.rss_kb()
    rec['fds_after_cold'] = _harness.open_fds()
    try:
        _harness.warm_rounds(spec, rec, lambda: as_times(group.call(time.time)))
    finally:
        t0 = time.perf_counter()
        group.close()
        rec['close_s'] = round(time.perf_counter() - t0, 4)


def import_(spec, rec):
    Group, cls, options = setup(spec)
    rec['version'] = version(spec)
    import bench_jobs
    group = Group(spec['hosts'], concurrency=spec['concurrency'], tunnel_class=cls, **options)
    try:
        start = _harness.phase_start()
        connected = group.connect()
        rec.end_phase('connect', start)
        outcome(rec, connected, lambda v: v is None, 'connect_')
        start = _harness.phase_start()
        result = group.call(bench_jobs.import_heavy)
        rec.end_phase('import', start)
        outcome(rec, result, lambda v: str(v).startswith(bench_jobs.HEAVY_VERSION + ' '),
                'import_')
        rec['import_result_sample'] = str(next(iter(result.values())))[:200]
        start = _harness.phase_start()
        again = group.call(bench_jobs.import_heavy)
        rec.end_phase('import_again', start)
        outcome(rec, again, lambda v: isinstance(v, str), 'import_again_')
    finally:
        group.close()


def put(spec, rec):
    Group, cls, options = setup(spec)
    rec['version'] = version(spec)
    group = Group(spec['hosts'], concurrency=spec['concurrency'], tunnel_class=cls, **options)
    remote = os.path.join(spec['put_remote_dir'], 'chopsticks.bin')
    size = os.path.getsize(spec['put_file'])
    try:
        start = _harness.phase_start()
        connected = group.connect()
        rec.end_phase('connect', start)
        outcome(rec, connected, lambda v: v is None, 'connect_')
        start = _harness.phase_start()
        result = group.put(spec['put_file'], remote)
        rec.end_phase('put', start)
        outcome(rec, result, lambda v: isinstance(v, dict) and v.get('size') == size, 'put_')
    finally:
        group.close()
    rec.note('chopsticks put: Group.put(local, remote): one remote path for every host '
             '(here all hosts share a disk), each host streams into its own temporary '
             'file, checks SHA-1 and renames')


def unsupported_ok(func):
    def wrapper(spec, rec):
        try:
            func(spec, rec)
        except Unsupported as exc:
            rec['unsupported'] = str(exc)
    return wrapper


if __name__ == '__main__':
    _harness.run('chopsticks', {'fanout': unsupported_ok(fanout), 'import': unsupported_ok(import_),
                                'put': unsupported_ok(put)})
