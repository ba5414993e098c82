"""Quickstart: one tunnel, one call."""
import time

from chopsticks.facts import python_version
from chopsticks.tunnel import Local, RemoteException

with Local() as tun:                      # connects here (or lazily on first call)
    print(tun.call(time.time))            # 1718000000.123
    print(tun.call(python_version))       # (3, 11, 2)
    print(tun.call(divmod, 17, 5))        # (3, 2): a tuple stays a tuple

    try:
        tun.call(int, 'not a number')
    except RemoteException as exc:
        print(exc.host, exc.type_name, exc.msg)   # localhost ValueError invalid literal ...
        print(exc.remote_traceback)

# Closed by the with block; a later call would start a new agent.
