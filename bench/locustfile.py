"""locust load test: each locust user holds one chopsticks tunnel and calls through it.

locust runs users as gevent greenlets, and chopsticks is gevent-native, so
the tunnels run inside locust's own event loop: no thread per user, no
bridge. Each user takes the next host of the fleet, connects in
``on_start`` (reported as request type ``connect``) and then calls
``time.time`` on its host as fast as it can (request type ``call``). Every
request is reported with ``self.environment.events.request.fire(...)``, so
locust's own statistics (requests per second, percentiles) are the result.

The fleet is described by a JSON file named in ``CHOPSTICKS_BENCH_FLEET``
(``bench/run.py locust`` writes it and starts the fleet)::

    CHOPSTICKS_BENCH_FLEET=fleet.json locust -f bench/locustfile.py \\
        --headless -u 100 -r 100 -t 20s --csv results/locust

Keys: hosts, user, port, identity_file, known_hosts, python, ssh_options,
connect_timeout_s, and optionally call_timeout_s and transport
(``openssh`` or ``paramiko``).
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path

from locust import User, constant, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chopsticks import tunnel as _tunnel  # noqa: E402

FLEET = json.loads(Path(os.environ['CHOPSTICKS_BENCH_FLEET']).read_text())
_SSH_KEYS = ('KexAlgorithms', 'HostKeyAlgorithms', 'GlobalKnownHostsFile', 'CheckHostIP',
             'UpdateHostKeys', 'AddressFamily')
_next_host = itertools.count()


def make_tunnel(host: str) -> _tunnel.BaseTunnel:
    options = dict(user=FLEET['user'], port=FLEET['port'], python=FLEET['python'],
                   identity_file=FLEET['identity_file'], known_hosts=FLEET['known_hosts'],
                   connect_timeout=FLEET.get('connect_timeout_s', 60.0))
    if FLEET.get('transport', 'openssh') == 'paramiko':
        return _tunnel.ParamikoTunnel(host, **options)  # type: ignore[attr-defined]
    options['ssh_options'] = {k: v for k, v in FLEET.get('ssh_options', {}).items()
                              if k in _SSH_KEYS}
    return _tunnel.SSHTunnel(host, **options)


class ChopsticksUser(User):
    """One tunnel per user; ``call(time.time)`` in a loop."""

    wait_time = constant(0)

    def on_start(self) -> None:
        hosts = FLEET['hosts']
        self.tunnel = make_tunnel(hosts[next(_next_host) % len(hosts)])
        self._timed('connect', 'SSHTunnel.connect', self.tunnel.connect)

    def on_stop(self) -> None:
        self.tunnel.close()

    @task
    def call_time(self) -> None:
        timeout = FLEET.get('call_timeout_s', 30.0)
        self._timed('call', 'time.time', lambda: self.tunnel.call(time.time, timeout=timeout))

    def _timed(self, kind: str, name: str, fn) -> None:  # type: ignore[no-untyped-def]
        exc = None
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported to locust as a failure
            exc = e
        self.environment.events.request.fire(
            request_type=kind, name=name, response_time=(time.perf_counter() - t0) * 1000,
            response_length=0, exception=exc, context={'host': self.tunnel.host})
