"""Quickstart: copy files to and from hosts."""
import os
import tempfile

from chopsticks.group import Group
from chopsticks.tunnel import Local

work = tempfile.mkdtemp()
config = os.path.join(work, 'app.conf')
with open(config, 'w') as f:
    f.write('workers = 4\n')

with Local('web1') as tun:
    # put: local -> remote. Streamed, checksummed, renamed into place.
    sent = tun.put(config, os.path.join(work, 'remote-app.conf'), mode=0o600)
    print(sent)      # {'remote_path': '...', 'sha1sum': '...', 'size': 12}

    # fetch: remote -> local.
    got = tun.fetch('/etc/hostname', os.path.join(work, 'hostname'))
    print(got)       # {'local_path': '...', 'remote_path': '/etc/hostname', ...}

with Group([Local('web1'), Local('web2')]) as group:
    # One local file per host: the template must contain {host}.
    fetched = group.fetch('/etc/os-release', os.path.join(work, '{host}-os-release'))
    for host, info in fetched.successful():
        print(host, info['local_path'], info['size'])

    pushed = group.put(config)          # no remote path: a new temporary file each
    for host, info in pushed.successful():
        print(host, info['remote_path'])
