"""Put and fetch a large file through a Local agent; print peak RSS of both sides (KiB)."""
import json
import os
import resource
import sys

from chopsticks.tunnel import Local


def agent_peak_rss():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main():
    src, remote, back = sys.argv[1:4]
    with Local('big') as tun:
        tun.call(len, 'warm up')
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        put = tun.put(src, remote)
        fetched = tun.fetch(remote, back)
        agent_kib = tun.call(agent_peak_rss)
    print(json.dumps({'put': put, 'fetch': fetched, 'agent_kib': agent_kib,
                      'controller_kib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      'controller_before_kib': before}))


if __name__ == '__main__':
    main()
