"""First-call and warm-call latency of every transport, on this machine.

    python3 bench/transports.py                  # 5 cold, 20 warm, fan-out of 50
    python3 bench/transports.py --cold 9 --warm 50 --fanout 500 --concurrency 100
    python3 bench/transports.py --only ssh-curve25519,paramiko

Starts what it needs and stops it afterwards: a loopback sshd fleet
(tests/fleet) whose servers also offer OpenSSH's default post-quantum key
exchange, and a private dockerd with an image of this machine's Python (the
Docker rows are skipped, with the reason, where dockerd cannot run).

For each transport it prints:

* cold: the median (and minimum) of ``--cold`` first calls, each ``construct +
  connect + call(time.time)`` on a new tunnel (one untimed first connect beforehand
  pays the one-off costs: importing paramiko or docker, building stage 2),
  and the controller's own CPU for it (this process only: OpenSSH's ssh
  processes are children and listed apart);
* warm: the median (and minimum) of ``--warm`` ``call(time.time)`` on one
  connected tunnel;
* fan-out: for SSHTunnel and ParamikoTunnel, one cold ``Group(N
  hosts).call(time.time)`` (wall time; per host: controller CPU, its RSS
  growth, CPU of child processes; peak OS threads), the median of 5 warm
  rounds, and the controller's CPU while the N tunnels sit idle for 2 s:
  what "the right transport for thousands of hosts" rests on.

Figures on a loaded machine are noisy: the load average is printed with them.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import gevent  # noqa: E402

from chopsticks.group import Group  # noqa: E402
from chopsticks.tunnel import Local  # noqa: E402
from tests.fleet.sshd import SSHFleet  # noqa: E402

Factory = Callable[[int], Any]


class DefaultKexFleet(SSHFleet):
    """The test fleet, with sshd offering OpenSSH's default key exchange too.

    The test fleet's sshd leaves the post-quantum hybrid out (it costs ~100 ms
    of CPU per connection); to measure it, the server must offer it.
    """

    def _sshd_config(self, index, addrs):  # type: ignore[no-untyped-def]
        path = super()._sshd_config(index, addrs)
        with open(path) as f:
            lines = [line for line in f if not line.startswith('KexAlgorithms ')]
        with open(path, 'w') as f:
            f.writelines(lines)
        return path


def ms(seconds: float) -> str:
    return f'{seconds * 1000:8.1f}'


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def os_threads() -> int:
    return len(os.listdir('/proc/self/task'))


def measure(label: str, factory: Factory, cold: int, warm: int) -> list[str]:
    first = factory(0)  # one-off costs: imports, stage 2
    first.call(time.time)
    first.close()
    walls, cpus = [], []
    for i in range(cold):
        cpu0, t0 = time.process_time(), time.perf_counter()
        tun = factory(i + 1)
        tun.call(time.time)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - cpu0)
        if i < cold - 1:
            tun.close()
    warms = []
    for _ in range(warm):
        t0 = time.perf_counter()
        tun.call(time.time)
        warms.append(time.perf_counter() - t0)
    tun.close()
    return [f'{label:<28}', ms(statistics.median(walls)), ms(min(walls)),
            ms(statistics.median(cpus)), ms(statistics.median(warms)), ms(min(warms))]


def rss() -> int:
    """This process's resident memory in bytes."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def fanout(label: str, tunnels: list[Any], concurrency: int) -> str:
    peak = [os_threads()]
    running = [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], os_threads())
            gevent.sleep(0.01)

    sampler = gevent.spawn(sample)
    group = Group(tunnels, concurrency=concurrency)
    rss0 = rss()
    cpu0, child0, t0 = time.process_time(), children_cpu(), time.perf_counter()
    try:
        result = group.call(time.time)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        grown = rss() - rss0
        running[0] = False
        sampler.join()
        rounds = []
        for _ in range(5):
            t1 = time.perf_counter()
            group.call(time.time)
            rounds.append(time.perf_counter() - t1)
        cpu1 = time.process_time()
        gevent.sleep(2.0)
        idle = (time.process_time() - cpu1) / 2.0
    finally:
        group.close()  # reaps the ssh processes: their CPU counts from here
        running[0] = False
        sampler.join()
    child = children_cpu() - child0
    failed = f'  {len(result.failed)} failed: {result.summary()}' if result.failed else ''
    n = len(tunnels)
    return (f'{label:<16} cold {wall:6.2f} s: controller CPU {cpu * 1000 / n:4.1f} ms/host, '
            f'RSS +{grown / n / 1024:4.0f} KiB/host, child processes CPU '
            f'{child * 1000 / n:4.1f} ms/host, peak OS threads {peak[0]}; warm round '
            f'{statistics.median(rounds) * 1000:6.1f} ms; idle CPU {idle * 100:4.1f}%{failed}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cold', type=int, default=5, help='first calls measured')
    parser.add_argument('--warm', type=int, default=20, help='warm calls measured')
    parser.add_argument('--fanout', type=int, default=50,
                        help='hosts in the fan-out comparison (0: skip it)')
    parser.add_argument('--concurrency', type=int, default=100,
                        help='Group concurrency in the fan-out comparison')
    parser.add_argument('--only', default='', help=(
        'comma-separated rows: local, ssh-default, ssh-curve25519, paramiko, '
        'paramiko-curve25519, docker, docker-exec (default: all)'))
    args = parser.parse_args()

    from chopsticks.transports.paramiko import ParamikoTunnel
    try:
        from chopsticks.tunnel import SSHTunnel
    except ImportError:
        SSHTunnel = None  # type: ignore[misc,assignment]
        print('# SSHTunnel is not there yet: its rows are skipped')

    work = tempfile.mkdtemp(prefix='ck-bench-transports-')
    fleet = DefaultKexFleet(max(2, args.fanout), os.path.join(work, 'fleet'))
    dockerd: Any = None
    image = ''
    docker_skip = ''
    try:
        try:
            from tests.fleet.dockerd import Dockerd, DockerdUnavailable, build_python_image
            try:
                dockerd = Dockerd(os.path.join(work, 'dockerd'))
                image = build_python_image(dockerd.client())
            except DockerdUnavailable as exc:
                docker_skip = str(exc).splitlines()[0]
        except ImportError as exc:
            docker_skip = str(exc)

        host = fleet.hosts[0]
        ssh_kw = dict(user=fleet.user, port=fleet.port, identity_file=fleet.identity_file,
                      known_hosts=fleet.known_hosts)
        curve = {'KexAlgorithms': 'curve25519-sha256'}
        rows: dict[str, tuple[str, Factory]] = {'local': ('Local', lambda i: Local(f'local-{i}'))}
        if SSHTunnel is not None:
            rows['ssh-default'] = ('SSHTunnel, default kex', lambda i: SSHTunnel(
                host, ssh_options={'ControlMaster': 'no'}, **ssh_kw))
            rows['ssh-curve25519'] = ('SSHTunnel, curve25519', lambda i: SSHTunnel(
                host, ssh_options={'ControlMaster': 'no', **curve}, **ssh_kw))
        rows['paramiko'] = ('ParamikoTunnel, default kex', lambda i: ParamikoTunnel(
            host, **ssh_kw))
        rows['paramiko-curve25519'] = ('ParamikoTunnel, curve25519', lambda i: ParamikoTunnel(
            host, ssh_options=curve, **ssh_kw))
        if dockerd is not None:
            from chopsticks.transports.docker import Docker, DockerExec
            client = dockerd.client()
            base = client.containers.run(image, ['/usr/bin/sleep', '3600'], detach=True,
                                         network_mode='none', name='ck-bench-exec')
            rows['docker'] = ('Docker (new container)', lambda i: Docker(
                f'ck-bench-{i}', image, client=client, network_mode='none'))
            rows['docker-exec'] = ('DockerExec', lambda i: DockerExec(base.name, client=client))
        only = [k for k in args.only.split(',') if k]

        print(f'# {time.strftime("%Y-%m-%d %H:%M")}  load average '
              f'{" ".join(f"{x:.1f}" for x in os.getloadavg())}  CPUs {os.cpu_count()}  '
              f'python {sys.version.split()[0]}')
        ssh_version = subprocess.run(['ssh', '-V'], capture_output=True, text=True).stderr
        openssh_kex = subprocess.run(['ssh', '-Q', 'kex'], capture_output=True,
                                     text=True).stdout.split()
        import paramiko
        preferred = paramiko.Transport._preferred_kex
        negotiated = next((k for k in preferred if k in openssh_kex), '?')
        print(f'# {ssh_version.strip()}; paramiko {paramiko.__version__}; remote '
              f'/usr/bin/python3; the fleet sshd offers its default kex and curve25519')
        print(f'# paramiko prefers {", ".join(preferred[:2])}...: with this OpenSSH it '
              f'negotiates {negotiated}')
        if dockerd is not None:
            print(f'# dockerd storage driver {dockerd.storage_driver}, image {image}')
        else:
            print(f'# Docker rows skipped: {docker_skip}')
        print(f'\n{"transport":<28} {"cold ms":>8} {"min":>8} {"cold CPU":>8} '
              f'{"warm ms":>8} {"min":>8}   (medians of {args.cold} cold, {args.warm} warm; '
              'the minimum shows the cost without load)')
        for key, (label, factory) in rows.items():
            if only and key not in only:
                continue
            print(' '.join(measure(label, factory, args.cold, args.warm)), flush=True)
        if dockerd is not None:
            base.remove(force=True)

        if args.fanout:
            hosts = fleet.hosts[:args.fanout]
            print(f'\ncold fan-out, Group of {len(hosts)} hosts, concurrency '
                  f'{args.concurrency}, curve25519:')
            threads_before = os_threads()
            if SSHTunnel is not None:
                print(fanout('SSHTunnel', [SSHTunnel(h, ssh_options={'ControlMaster': 'no',
                                                                     **curve}, **ssh_kw)
                                           for h in hosts], args.concurrency), flush=True)
            print(fanout('ParamikoTunnel', [ParamikoTunnel(h, ssh_options=curve, **ssh_kw)
                                            for h in hosts], args.concurrency), flush=True)
            gevent.sleep(1.0)
            left = [t for t in threading.enumerate() if t.name.startswith('chopsticks-')]
            print(f'(OS threads before: {threads_before}; after: {os_threads()}, '
                  f'{len(left)} of them tunnel threads)')
    finally:
        if dockerd is not None:
            dockerd.stop()
        fleet.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
