"""Functions defined in a script (``__main__``) travel as source."""
import functools
import math

from chopsticks.tunnel import Local

SCALE = 10                        # a global the function names: sent by value


def area(radius):
    return round(math.pi * radius ** 2 * SCALE, 2)


class Counter(object):            # a __main__ class: sent by source too
    def __init__(self, start):
        self.value = start

    def bump(self):
        self.value += 1
        return self.value


def use_counter(start):
    return Counter(start).bump()


def make_multiplier(factor):
    def multiply(x):              # a closure: `factor` is captured by value
        return x * factor
    return multiply


with Local() as tun:
    print(tun.call(area, 2))                    # 125.66
    print(tun.call(use_counter, 41))            # 42
    print(tun.call(make_multiplier(3), 14))     # 42
    print(tun.call(functools.partial(area, 1))) # 31.42: partials pickle as usual

    try:
        tun.call(lambda: 42)
    except TypeError as exc:                    # refused before anything is sent
        print(exc)                              # ... lambdas have no source of their own; use def
