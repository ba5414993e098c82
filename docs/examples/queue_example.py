"""A Queue: each host runs its own steps in order, hosts in parallel."""
import os
import tempfile
import time

from chopsticks.group import Group
from chopsticks.queue import Queue
from chopsticks.tunnel import ErrorResult, Local


def unpack(path):
    with open(path) as f:
        return 'installed %d bytes' % len(f.read())


def restart(delay):
    time.sleep(delay)
    return 'restarted'


work = tempfile.mkdtemp()
bundle = os.path.join(work, 'bundle.txt')
with open(bundle, 'w') as f:
    f.write('payload\n')

fast, slow = Local('fast'), Local('slow')
group = Group([fast, slow])
queue = Queue()

queue.put(group, bundle, os.path.join(work, 'installed.txt'))  # step 1 on each host
installed = queue.call(group, unpack, os.path.join(work, 'installed.txt'))  # step 2
queue.call(slow, restart, 0.5)            # only on `slow`: `fast` does not wait for it


def verify(result):
    # A callback may queue more work; run() returns when all of it is done.
    for tunnel in group:
        if not isinstance(result[tunnel.host], ErrorResult):
            queue.call(tunnel, restart, 0).with_callback(
                lambda value, host=tunnel.host: print(host, 'then:', value))


installed.with_callback(verify)
queue.run()
print(installed.value)      # GroupResult({'fast': 'installed 8 bytes', 'slow': ...})
group.close()
