"""Run a group bigger than the open-file limit allows; print what each host got."""
import collections
import json
import resource
import sys
import time

LIMIT = int(sys.argv[1])
N = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

from chopsticks.group import Group  # noqa: E402
from chopsticks.tunnel import Local  # noqa: E402

group = Group([Local('fd%d' % i) for i in range(N)], concurrency=N)
result = group.call(time.time)
kinds = collections.Counter(type(v.exception).__name__ if hasattr(v, 'exception') else 'ok'
                            for v in result.values())
messages = sorted({v.msg for _, v in result.failures()})[:2]
group.close()
after = Group([Local('again')]).call(time.time)
print(json.dumps({'kinds': kinds, 'messages': messages,
                  'after_close_ok': all(isinstance(v, float) for v in after.values())}))
