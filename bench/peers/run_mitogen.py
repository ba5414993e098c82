"""mitogen: ``router.ssh(...)`` per host, then ``context.call_async`` and a ``Select``.

``Router.ssh`` blocks until the context is up, so connections are made from
a pool of ``concurrency`` threads (the way mitogen's docs parallelise
connects). Calls go out at once with ``call_async`` and come back through
one ``mitogen.select.Select``. mitogen's defaults are kept (ssh
``Compression yes`` among them); ``-F <fleet ssh_config>`` is passed in
``ssh_args``. A put is mitogen's own streaming ``FileService`` (what its
Ansible extension uses): each child pulls the file from the master.
"""
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import _harness

logging.basicConfig(level=logging.WARNING)


def setup(spec):
    sys.path.insert(0, spec['import_path'])
    import mitogen.master
    broker = mitogen.master.Broker()
    router = mitogen.master.Router(broker)
    return broker, router


def connect_all(spec, router):
    """host -> Context, or an error text."""
    def one(host):
        try:
            return router.ssh(hostname=host, username=spec['user'], port=spec['port'],
                              identity_file=spec['identity_file'],
                              python_path=spec['python'],
                              connect_timeout=spec['connect_timeout_s'],
                              ssh_args=['-F', spec['ssh_config']])
        except Exception as exc:  # noqa: BLE001 - recorded per host
            return '%s: %s' % (type(exc).__name__, exc)

    with ThreadPoolExecutor(spec['concurrency']) as pool:
        return dict(zip(spec['hosts'], pool.map(one, spec['hosts'])))


def call_all(contexts, fn, *args):
    """Start ``fn(*args)`` on every context at once; host -> value or error text."""
    import mitogen.core
    import mitogen.select
    results = {}
    receivers = []
    by_recv = {}
    for host, ctx in contexts.items():
        if isinstance(ctx, str):
            results[host] = ctx
            continue
        recv = ctx.call_async(fn, *args)
        by_recv[recv] = host
        receivers.append(recv)
    if receivers:
        with mitogen.select.Select(receivers, oneshot=True) as sel:
            for msg in sel:
                host = by_recv[msg.receiver]
                try:
                    results[host] = msg.unpickle()
                except mitogen.core.CallError as exc:
                    results[host] = 'CallError: %s' % (str(exc).splitlines()[0],)
                except mitogen.core.ChannelError as exc:
                    results[host] = 'ChannelError: %s' % (exc,)
    return results


def fanout(spec, rec):
    broker, router = setup(spec)
    import mitogen
    rec['version'] = '.'.join(map(str, mitogen.__version__))
    rec.note('mitogen: defaults kept (ssh Compression yes); connects from a pool of '
             'threads, Router.ssh being blocking')
    try:
        start = _harness.phase_start()
        contexts = connect_all(spec, router)
        results = call_all(contexts, time.time)
        rec.end_phase('cold', start)
        rec.check_times(results, 'cold_')
        rec['rss_after_cold_kb'] = _harness.rss_kb()
        rec['fds_after_cold'] = _harness.open_fds()
        live = {h: c for h, c in contexts.items() if not isinstance(c, str)}
        _harness.warm_rounds(spec, rec, lambda: call_all(live, time.time))
    finally:
        t0 = time.perf_counter()
        broker.shutdown()
        broker.join()
        rec['close_s'] = round(time.perf_counter() - t0, 4)


def count(rec, results, check, prefix):
    errors = {}
    ok = 0
    for value in results.values():
        if check(value):
            ok += 1
        else:
            text = ' '.join(str(value).split())[:300]
            errors[text] = errors.get(text, 0) + 1
    rec.set_outcome(ok, errors, prefix)


def import_(spec, rec):
    broker, router = setup(spec)
    import mitogen
    import bench_jobs
    rec['version'] = '.'.join(map(str, mitogen.__version__))
    try:
        start = _harness.phase_start()
        contexts = connect_all(spec, router)
        rec.end_phase('connect', start)
        count(rec, contexts, lambda c: not isinstance(c, str), 'connect_')
        start = _harness.phase_start()
        results = call_all(contexts, bench_jobs.import_heavy)
        rec.end_phase('import', start)
        count(rec, results, lambda v: str(v).startswith(bench_jobs.HEAVY_VERSION + ' '),
              'import_')
        rec['import_result_sample'] = str(next(iter(results.values())))[:300]
        start = _harness.phase_start()
        again = call_all(contexts, bench_jobs.import_heavy)
        rec.end_phase('import_again', start)
        count(rec, again, lambda v: isinstance(v, str) and not v.startswith(('CallError', 'Channel')),
              'import_again_')
    finally:
        broker.shutdown()
        broker.join()


def put(spec, rec):
    broker, router = setup(spec)
    import mitogen
    import mitogen.service
    import bench_jobs
    rec['version'] = '.'.join(map(str, mitogen.__version__))
    size = os.path.getsize(spec['put_file'])
    try:
        file_service = mitogen.service.FileService(router)
        pool = mitogen.service.Pool(router, services=[file_service], size=4)
        file_service.register(spec['put_file'])
        start = _harness.phase_start()
        contexts = connect_all(spec, router)
        rec.end_phase('connect', start)
        count(rec, contexts, lambda c: not isinstance(c, str), 'connect_')
        master = router.myself()
        start = _harness.phase_start()
        results = {}
        receivers = {}
        import mitogen.select
        for host, ctx in contexts.items():
            if isinstance(ctx, str):
                results[host] = ctx
                continue
            dest = os.path.join(spec['put_remote_dir'], 'mitogen-%s.bin' % host)
            receivers[ctx.call_async(bench_jobs.mitogen_get_file, master,
                                     spec['put_file'], dest)] = host
        with mitogen.select.Select(list(receivers), oneshot=True) as sel:
            for msg in sel:
                try:
                    results[receivers[msg.receiver]] = msg.unpickle()
                except Exception as exc:  # noqa: BLE001
                    results[receivers[msg.receiver]] = '%s: %s' % (type(exc).__name__, exc)
        rec.end_phase('put', start)
        count(rec, results, lambda v: isinstance(v, dict) and v.get('size') == size, 'put_')
        pool.stop()
    finally:
        broker.shutdown()
        broker.join()
    rec.note('mitogen put: FileService (streamed, 1 MiB window per stream), each child '
             'pulls the file; one path per host')


if __name__ == '__main__':
    _harness.run('mitogen', {'fanout': fanout, 'import': import_, 'put': put})
