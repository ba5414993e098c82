"""Results as they arrive: a progress line for a long group call."""
import random
import time

from chopsticks.group import Group
from chopsticks.tunnel import Local


def work(seconds):
    time.sleep(seconds)
    return seconds


group = Group([Local('host%d' % i) for i in range(6)], concurrency=3)
try:
    # stream(): an iterator of (host, value) in the order hosts finish.
    done = 0
    for host, value in group.stream(work, 0.2):
        done += 1
        print('%d/%d %s -> %r' % (done, len(group), host, value))

    # call_with_callback(): the same, and a GroupResult at the end.
    progress = []
    result = group.call_with_callback(lambda host, value: progress.append(host),
                                      work, random.random() / 10)
    print(len(progress), 'callbacks;', len(result), 'results')
finally:
    group.close()
