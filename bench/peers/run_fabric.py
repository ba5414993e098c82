"""Fabric 3: ``ThreadingGroup(*hosts).run(...)`` (paramiko, one thread per host).

It runs commands only: ``/usr/bin/python3 -c "import time;print(time.time())"``,
output parsed. ThreadingGroup has no concurrency bound (a thread per host,
all at once). Connections stay open, so a warm round is a new channel and a
new python per host. Fabric's default host key policy (paramiko
AutoAddPolicy: keys are accepted, not checked) is kept. Put is
``ThreadingGroup.put`` (SFTP), which takes one remote path for every host.
"""
import os
import time

import _harness

COMMAND = '%s -c "import time;print(time.time())"'


def group_for(spec):
    from fabric import ThreadingGroup
    return ThreadingGroup(*spec['hosts'], user=spec['user'], port=spec['port'],
                          connect_timeout=int(spec['connect_timeout_s']),
                          connect_kwargs={'key_filename': spec['identity_file'],
                                          'look_for_keys': False, 'allow_agent': False})


def do(group, method, *args, **kwargs):
    from fabric.exceptions import GroupException
    try:
        return getattr(group, method)(*args, **kwargs)
    except GroupException as exc:
        return exc.result


def run_round(group, spec):
    result = do(group, 'run', COMMAND % spec['python'], hide=True, warn=True,
                in_stream=False)
    out = {}
    for cxn, value in result.items():
        if isinstance(value, BaseException):
            out[cxn.host] = '%s: %s' % (type(value).__name__, value)
            continue
        try:
            out[cxn.host] = float(value.stdout.split()[-1])
        except (IndexError, ValueError):
            out[cxn.host] = 'exit %s: %r' % (value.exited, value.stderr[-200:])
    for host in spec['hosts']:
        out.setdefault(host, 'no result')
    return out


def version():
    import fabric
    return fabric.__version__


def fanout(spec, rec):
    rec['version'] = version()
    rec['concurrency'] = None
    rec.note('Fabric: runs a command (python3 -c print(time.time())) and parses it; '
             'ThreadingGroup starts one thread per host, no bound; warm rounds reuse '
             'the connections, new python per host; host keys auto-added (its default)')
    start = _harness.phase_start()
    group = group_for(spec)
    try:
        results = run_round(group, spec)
        rec.end_phase('cold', start)
        rec.check_times(results, 'cold_')
        rec['rss_after_cold_kb'] = _harness.rss_kb()
        rec['fds_after_cold'] = _harness.open_fds()
        _harness.warm_rounds(spec, rec, lambda: run_round(group, spec))
    finally:
        t0 = time.perf_counter()
        group.close()
        rec['close_s'] = round(time.perf_counter() - t0, 4)


def put(spec, rec):
    rec['version'] = version()
    rec['concurrency'] = None
    size = os.path.getsize(spec['put_file'])
    group = group_for(spec)
    try:
        start = _harness.phase_start()
        connected = run_round(group, spec)
        rec.end_phase('connect', start)
        rec.check_times(connected, 'connect_')
        remote = os.path.join(spec['put_remote_dir'], 'fabric.bin')
        start = _harness.phase_start()
        result = do(group, 'put', spec['put_file'], remote)
        rec.end_phase('put', start)
        errors = {}
        ok = 0
        for cxn, value in result.items():
            if isinstance(value, BaseException):
                text = ('%s: %s' % (type(value).__name__, value))[:300]
                errors[text] = errors.get(text, 0) + 1
            else:
                ok += 1
        missing = len(spec['hosts']) - len(result)
        if missing:
            errors['no result'] = missing
        if os.path.exists(remote) and os.path.getsize(remote) != size:
            errors['remote file has the wrong size'] = 1
        rec.set_outcome(ok, errors, 'put_')
    finally:
        group.close()
    rec.note('Fabric put: ThreadingGroup.put (SFTP); it takes one remote path, so '
             'on this one-machine fleet every host writes the same file')


if __name__ == '__main__':
    _harness.run('fabric', {'fanout': fanout, 'put': put})
