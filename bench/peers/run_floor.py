"""The floor: bare ``ssh host /usr/bin/python3 -c pass`` through a pool of the same size.

The least work any tool must do for a cold fan-out: one OpenSSH login and
one Python start per host, and nothing else. Stdlib only; the pool is a
loop over pidfds in epoll (no thread or greenlet per host), so the
controller itself costs next to nothing.

Scenarios: ``fanout`` (no warm rounds unless ``spec['floor_warm']``: with
no connection to keep, a warm round is the cold job again), ``put`` (``ssh host 'cat > PATH' < FILE``).
"""
import collections
import os
import selectors
import subprocess
import time

import _harness


def ssh_base(spec):
    return ['ssh', '-F', spec['ssh_config']]


def pooled(jobs, concurrency, timeout):
    """Run ``(key, argv, stdin_path)`` jobs, at most ``concurrency`` at once.

    Returns key -> None (exit 0) or an error text.
    """
    sel = selectors.DefaultSelector()
    todo = collections.deque(jobs)
    running = {}
    results = {}
    deadline = time.monotonic() + timeout
    while todo or running:
        while todo and len(running) < concurrency:
            key, argv, stdin_path = todo.popleft()
            stdin = open(stdin_path, 'rb') if stdin_path else subprocess.DEVNULL
            try:
                p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, close_fds=True)
            except OSError as exc:
                results[key] = 'spawn failed: %s' % exc
                continue
            finally:
                if stdin_path:
                    stdin.close()
            pidfd = os.pidfd_open(p.pid)
            running[pidfd] = (key, p)
            sel.register(pidfd, selectors.EVENT_READ)
        left = deadline - time.monotonic()
        if left <= 0:
            for pidfd, (key, p) in running.items():
                p.kill()
                p.wait()
                results[key] = 'timeout after %gs' % timeout
                sel.unregister(pidfd)
                os.close(pidfd)
                p.stderr.close()
            running.clear()
            break
        for sk, _ in sel.select(left):
            key, p = running.pop(sk.fd)
            sel.unregister(sk.fd)
            os.close(sk.fd)
            status = p.wait()
            err = p.stderr.read()
            p.stderr.close()
            if status == 0:
                results[key] = None
            else:
                results[key] = 'exit %d: %s' % (status, err.decode('utf-8', 'replace').strip())
    sel.close()
    return results


def outcome(rec, results, prefix=''):
    errors = {}
    for value in results.values():
        if value is not None:
            text = ' '.join(value.split())[:300]
            errors[text] = errors.get(text, 0) + 1
    rec.set_outcome(len(results) - sum(errors.values()), errors, prefix)


def fanout(spec, rec):
    base = ssh_base(spec)
    jobs = [(h, base + [h, spec['python'], '-c', 'pass'], None) for h in spec['hosts']]
    conc = spec['concurrency']
    timeout = spec['op_timeout_s']
    start = _harness.phase_start()
    results = pooled(jobs, conc, timeout)
    rec.end_phase('cold', start)
    outcome(rec, results, 'cold_')
    rec['rss_after_cold_kb'] = _harness.rss_kb()
    if spec.get('floor_warm'):
        # The floor keeps no connection: a "warm" round is the cold job again,
        # so it is only run on request (its figure is the cold figure).
        def one_round():
            res = pooled(jobs, conc, timeout)
            # a floor round brings back no time: count exit 0 as a good answer
            return {h: (time.time() if v is None else v) for h, v in res.items()}

        _harness.warm_rounds(spec, rec, one_round)


def put(spec, rec):
    base = ssh_base(spec)
    remote_dir = spec['put_remote_dir']
    paths = {h: '%s/floor-%s.bin' % (remote_dir, h) for h in spec['hosts']}
    jobs = [(h, base + [h, 'cat > %s' % paths[h]], spec['put_file']) for h in spec['hosts']]
    start = _harness.phase_start()
    results = pooled(jobs, spec['concurrency'], spec['op_timeout_s'])
    rec.end_phase('put', start)
    size = os.path.getsize(spec['put_file'])
    for h, v in results.items():
        if v is None:
            try:
                got = os.path.getsize(paths[h])  # loopback fleet: the "remote" is here
            except OSError as exc:
                got = exc
            if got != size:
                results[h] = 'remote file has %r bytes, expected %d' % (got, size)
    outcome(rec, results, 'put_')
    rec['remote_paths'] = sorted(paths.values())
    rec.note("floor put: ssh host 'cat > PATH' < FILE (no checksum, no rename)")


if __name__ == '__main__':
    _harness.run('floor', {'fanout': fanout, 'put': put},
                 version=subprocess.run(['ssh', '-V'], stderr=subprocess.PIPE,
                                        universal_newlines=True).stderr.strip())
