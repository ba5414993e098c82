"""Sudo tunnels: run as another user through sudo -n, and fail clearly when it asks."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chopsticks import errors
from chopsticks.tunnel import Sudo

HERE = Path(__file__).parent

pytestmark = pytest.mark.skipif(shutil.which('sudo') is None, reason='sudo is not installed')


def whoami():
    import os
    import pwd
    return pwd.getpwuid(os.geteuid()).pw_name


def test_sudo_root():
    with Sudo() as tun:
        assert tun.host == 'root@localhost'
        assert repr(tun) == "Sudo('root@localhost')"
        assert tun.call(whoami) == 'root'


def test_sudo_other_user():
    with Sudo('nobody', name='as-nobody') as tun:
        assert tun.host == 'as-nobody'
        assert tun.call(whoami) == 'nobody'


def test_sudo_unknown_user():
    with pytest.raises(errors.ConnectError) as info:
        Sudo('no-such-user-here').connect()
    assert 'no-such-user-here' in str(info.value)


def test_invalid_user_name():
    with pytest.raises(ValueError):
        Sudo('-u')


@pytest.fixture
def shared_dir():
    """A directory ``nobody`` can read (pytest's tmp_path is private to root)."""
    import tempfile
    path = Path(tempfile.mkdtemp(prefix='chopsticks-sudo-test-'))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_password_required_is_a_clear_error(shared_dir):
    """A user without sudo rights: sudo -n would prompt, so connecting fails at once.

    The controller must run unprivileged for that, so this runs a small
    controller as ``nobody`` on the system Python, with copies of the
    controller's own dependencies.
    """
    import gevent
    import greenlet
    import msgpack
    import zope.event
    import zope.interface
    if sys.version_info[:2] != (3, 11):
        pytest.skip('the copied C extensions are built for the controller, Python 3.11')
    deps = shared_dir / 'deps'
    for module in (gevent, greenlet, msgpack):
        shutil.copytree(Path(module.__file__).parent, deps / module.__name__)
    shutil.copytree(Path(zope.interface.__file__).parent.parent, deps / 'zope')
    shutil.copytree(HERE.parent / 'chopsticks', deps / 'chopsticks')
    script = shutil.copy(HERE / 'scripts' / 'sudo_as_user.py', shared_dir)
    if sys.version_info[:2] != (3, 11):
        pytest.skip('the copied C extensions are built for the controller, Python 3.11')
    out = subprocess.run(
        ['runuser', '-u', 'nobody', '--', '/usr/bin/python3',
         script],
        capture_output=True, text=True, timeout=60, cwd='/',
        env={'PATH': os.environ['PATH'], 'PYTHONPATH': str(deps)})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result['error'] == 'SudoPasswordRequired', result
    assert 'password' in result['message']
    assert result['seconds'] < 5
