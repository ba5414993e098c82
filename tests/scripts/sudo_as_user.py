"""Run as an unprivileged user: Sudo must fail fast and clearly where sudo wants a password."""
import json
import time

from chopsticks.errors import SudoPasswordRequired
from chopsticks.tunnel import Sudo

started = time.monotonic()
try:
    Sudo('root').call(time.time)
except SudoPasswordRequired as exc:
    print(json.dumps({'error': 'SudoPasswordRequired', 'message': str(exc),
                      'seconds': time.monotonic() - started}))
else:
    print(json.dumps({'error': None}))
