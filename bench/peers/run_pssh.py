"""parallel-ssh (libssh2 through ssh2-python, gevent): ``ParallelSSHClient.run_command``.

It runs commands only: every host runs ``/usr/bin/python3 -c
"import time;print(time.time())"`` and the output is parsed. The client
keeps its SSH sessions, so a warm round is a new channel and a new python
per host on the same connection. ``pool_size`` is the concurrency. It does
not check host keys (libssh2 client); put is ``copy_file`` (SFTP).
"""
import os
import time

import _harness

COMMAND = '%s -c "import time;print(time.time())"'


def client_for(spec):
    from pssh.clients import ParallelSSHClient
    return ParallelSSHClient(spec['hosts'], user=spec['user'], port=spec['port'],
                             pkey=spec['identity_file'], pool_size=spec['concurrency'],
                             timeout=spec['connect_timeout_s'], num_retries=1,
                             allow_agent=False)


def run_round(client, spec):
    output = client.run_command(COMMAND % spec['python'], stop_on_errors=False)
    client.join(output, timeout=spec['op_timeout_s'])
    results = {}
    for out in output:
        if out.exception is not None:
            results[out.host] = '%s: %s' % (type(out.exception).__name__, out.exception)
            continue
        lines = list(out.stdout or ())
        try:
            results[out.host] = float(lines[-1])
        except (IndexError, ValueError):
            results[out.host] = 'exit %s, output %r' % (out.exit_code, lines[-3:])
    return results


def version():
    from importlib.metadata import version as v
    return v('parallel-ssh')


def fanout(spec, rec):
    rec['version'] = version()
    rec.note('parallel-ssh: runs a command (python3 -c print(time.time())) and parses it; '
             'warm rounds reuse the SSH sessions but start a new python per host; '
             'no host key check')
    start = _harness.phase_start()
    client = client_for(spec)
    results = run_round(client, spec)
    rec.end_phase('cold', start)
    rec.check_times(results, 'cold_')
    rec['rss_after_cold_kb'] = _harness.rss_kb()
    rec['fds_after_cold'] = _harness.open_fds()
    _harness.warm_rounds(spec, rec, lambda: run_round(client, spec))
    t0 = time.perf_counter()
    for host_client in list(getattr(client, '_host_clients', {}).values()):
        try:
            host_client.disconnect()
        except Exception:  # noqa: BLE001
            pass
    rec['close_s'] = round(time.perf_counter() - t0, 4)


def put(spec, rec):
    import gevent
    rec['version'] = version()
    size = os.path.getsize(spec['put_file'])
    client = client_for(spec)
    # connect (and check) with one trivial command first
    start = _harness.phase_start()
    output = client.run_command('true', stop_on_errors=False)
    client.join(output)
    rec.end_phase('connect', start)
    errs = {}
    for out in output:
        if out.exception is not None:
            errs[str(out.exception)[:300]] = errs.get(str(out.exception)[:300], 0) + 1
    rec.set_outcome(len(spec['hosts']) - sum(errs.values()), errs, 'connect_')
    remote = os.path.join(spec['put_remote_dir'], 'pssh-%(host)s.bin')
    start = _harness.phase_start()
    greenlets = client.copy_file(spec['put_file'], remote,
                                 copy_args=[{'host': h} for h in spec['hosts']])
    gevent.joinall(greenlets, raise_error=False)
    rec.end_phase('put', start)
    errors = {}
    ok = 0
    for host, g in zip(spec['hosts'], greenlets):
        path = remote % {'host': host}
        if g.exception is not None:
            text = '%s: %s' % (type(g.exception).__name__, g.exception)
        elif os.path.exists(path) and os.path.getsize(path) == size:
            ok += 1
            continue
        else:
            text = 'remote file missing or short'  # loopback: the "remote" is here
        errors[text[:300]] = errors.get(text[:300], 0) + 1
    rec.set_outcome(ok, errors, 'put_')
    rec.note('parallel-ssh put: copy_file (SFTP), one path per host')


if __name__ == '__main__':
    _harness.run('parallel-ssh', {'fanout': fanout, 'put': put})
