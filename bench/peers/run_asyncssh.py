"""asyncssh: ``asyncssh.connect`` + ``conn.run`` per host under an ``asyncio.Semaphore``.

It runs commands only: ``/usr/bin/python3 -c "import time;print(time.time())"``,
output parsed. The semaphore is the concurrency (connect + first command);
connections stay open, so a warm round is a new channel and a new python per
host. Host keys are checked against the fleet's known_hosts, read once
(``asyncssh.read_known_hosts``) and shared. Put is SFTP ``put``.
"""
import asyncio
import os
import time

import _harness

COMMAND = '%s -c "import time;print(time.time())"'


def parse(result):
    if isinstance(result, BaseException):
        return '%s: %s' % (type(result).__name__, result)
    try:
        return float(result.stdout.split()[-1])
    except (IndexError, ValueError, AttributeError):
        return 'exit %s: %r' % (getattr(result, 'exit_status', '?'),
                                str(getattr(result, 'stderr', ''))[-200:])


class Fleet:
    def __init__(self, spec):
        import asyncssh
        self.spec = spec
        self.asyncssh = asyncssh
        self.known_hosts = asyncssh.read_known_hosts(spec['known_hosts'])
        self.client_keys = [asyncssh.read_private_key(spec['identity_file'])]
        self.sem = asyncio.Semaphore(spec['concurrency'])
        self.conns = {}

    async def connect(self, host):
        return await asyncio.wait_for(self.asyncssh.connect(
            host, port=self.spec['port'], username=self.spec['user'],
            client_keys=self.client_keys, known_hosts=self.known_hosts,
            kex_algs=[self.spec['kex']], agent_path=None),
            self.spec['connect_timeout_s'])

    async def connect_and_run(self, host, command):
        async with self.sem:
            try:
                conn = self.conns[host] = await self.connect(host)
                if command is None:
                    return None
                return await conn.run(command, check=False)
            except Exception as exc:  # noqa: BLE001 - recorded per host
                return exc

    async def run(self, host, command):
        async with self.sem:
            try:
                return await self.conns[host].run(command, check=False)
            except Exception as exc:  # noqa: BLE001
                return exc

    async def cold(self, command):
        hosts = self.spec['hosts']
        results = await asyncio.gather(*(self.connect_and_run(h, command) for h in hosts))
        return dict(zip(hosts, results))

    async def round(self, command):
        hosts = [h for h in self.spec['hosts'] if h in self.conns]
        results = await asyncio.gather(*(self.run(h, command) for h in hosts))
        return {h: parse(r) for h, r in zip(hosts, results)}

    async def close(self):
        for conn in self.conns.values():
            conn.close()
        await asyncio.gather(*(c.wait_closed() for c in self.conns.values()),
                             return_exceptions=True)


def version():
    import asyncssh
    return asyncssh.__version__


def fanout(spec, rec):
    rec['version'] = version()
    rec.note('asyncssh: runs a command (python3 -c print(time.time())) and parses it; '
             'warm rounds reuse the connections, new python per host')
    command = COMMAND % spec['python']

    async def main():
        start = _harness.phase_start()
        fleet = Fleet(spec)
        results = await fleet.cold(command)
        rec.end_phase('cold', start)
        rec.check_times({h: parse(r) for h, r in results.items()}, 'cold_')
        rec['rss_after_cold_kb'] = _harness.rss_kb()
        rec['fds_after_cold'] = _harness.open_fds()
        try:
            await warm_async(spec, rec, lambda: fleet.round(command))
        finally:
            t0 = time.perf_counter()
            await fleet.close()
            rec['close_s'] = round(time.perf_counter() - t0, 4)

    asyncio.run(main())


async def warm_async(spec, rec, one_round):
    """``_harness.warm_rounds`` for a coroutine round."""
    warm = _harness.Warm(spec)
    while warm.more():
        t0 = time.perf_counter()
        results = await one_round()
        warm.add(time.perf_counter() - t0, results)
    warm.store(rec)


def put(spec, rec):
    rec['version'] = version()
    size = os.path.getsize(spec['put_file'])

    async def main():
        fleet = Fleet(spec)
        start = _harness.phase_start()
        connected = await fleet.cold(None)
        rec.end_phase('connect', start)
        errs = {}
        for r in connected.values():
            if r is not None:
                errs[parse(r)[:300]] = errs.get(parse(r)[:300], 0) + 1
        rec.set_outcome(len(connected) - sum(errs.values()), errs, 'connect_')

        async def one(host):
            path = os.path.join(spec['put_remote_dir'], 'asyncssh-%s.bin' % host)
            async with fleet.sem:
                try:
                    async with fleet.conns[host].start_sftp_client() as sftp:
                        await sftp.put(spec['put_file'], path)
                except Exception as exc:  # noqa: BLE001
                    return '%s: %s' % (type(exc).__name__, exc)
            return None if os.path.getsize(path) == size else 'short file'

        hosts = [h for h in spec['hosts'] if h in fleet.conns]
        start = _harness.phase_start()
        results = await asyncio.gather(*(one(h) for h in hosts))
        rec.end_phase('put', start)
        errors = {}
        for r in results:
            if r is not None:
                errors[r[:300]] = errors.get(r[:300], 0) + 1
        rec.set_outcome(len(results) - sum(errors.values()), errors, 'put_')
        await fleet.close()

    asyncio.run(main())
    rec.note('asyncssh put: SFTP put per connection, one path per host')


if __name__ == '__main__':
    _harness.run('asyncssh', {'fanout': fanout, 'put': put})
