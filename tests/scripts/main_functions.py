"""Run as a script: calls functions defined in __main__ on a Local agent, prints JSON."""
import functools
import json
import sys
import os

from chopsticks.tunnel import Local
from chopsticks.errors import ChopsticksError

SCALE = 3
SETTINGS = {'greeting': 'hello'}


def helper(x):
    return x * SCALE


def uses_globals(x):
    return helper(x) + len(SETTINGS['greeting']) + len(os.sep)


class Point(object):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def norm1(self):
        return abs(self.x) + abs(self.y)


def measure(point):
    return point.norm1()


def make_adder(k):
    def add(x):
        return x + k
    return add


def tagged(func):
    @functools.wraps(func)
    def wrapper(*args):
        return ('tagged', func(*args))
    return wrapper


@tagged
def decorated(x):
    return x + 1


def calls_decorated(x):
    return decorated(x)


def recursive(n):
    return 0 if n == 0 else 1 + recursive(n - 1)


def main():
    python = sys.argv[1] if len(sys.argv) > 1 else None
    out = {}
    with Local('scripted', python=python) as tun:
        out['globals'] = tun.call(uses_globals, 2)
        out['class'] = tun.call(measure, Point(3, -4))
        out['closure'] = tun.call(make_adder(10), 5)
        out['recursive'] = tun.call(recursive, 5)
        out['decorated'] = tun.call(decorated, 1)
        out['calls_decorated'] = tun.call(calls_decorated, 1)
        try:
            tun.call(lambda: 1)
        except ChopsticksError as exc:
            out['lambda'] = str(exc)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
