"""Quickstart: the same call on many hosts, failures as data."""
import time

from chopsticks.errors import GroupError
from chopsticks.facts import hostname
from chopsticks.group import Group
from chopsticks.tunnel import Local

hosts = [Local('a'), Local('b'), Local('c'),
         Local('broken', python='/nonexistent/python3')]

with Group(hosts, concurrency=100) as group:   # connects every host (bounded)
    result = group.call(time.time)             # a GroupResult: dict of host -> value

    for host, t in result.successful():
        print(host, t)
    for host, error in result.failures():
        print(host, 'failed:', error.msg)   # InterpreterNotFound: cannot run ...

    print(sorted(result.succeeded))            # ['a', 'b', 'c']
    print(result.summary())                    # 1/4 hosts failed: 1 InterpreterNotFound ...

    try:
        result.raise_failures()
    except GroupError as exc:
        print(list(exc.failures))              # ['broken']

    healthy = group - Local('broken')          # set operations give new groups
    print(healthy.call(hostname, timeout=10))
