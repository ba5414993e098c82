"""The agent on every interpreter present: a call, and a call importing a served package."""
from __future__ import annotations

import glob
import os

import pytest

from chopsticks.facts import python_version
from chopsticks.tunnel import Local, RemoteException
from tests.servedpkg.calls import raise_in_served, served_call

PYENV = os.path.expanduser('~/.pyenv/versions')
EXPECTED = ['2.7.18', '3.6.15', '3.7.16', '3.8.18', '3.9.18', '3.10.13', '3.11.7',
            '3.12.1', '3.13.0']
INTERPRETERS = ['/usr/bin/python3'] + [f'{PYENV}/{v}/bin/python' for v in EXPECTED]
# Any other version pyenv has here is exercised too.
INTERPRETERS += sorted(set(glob.glob(f'{PYENV}/*/bin/python')) - set(INTERPRETERS))


@pytest.fixture(params=INTERPRETERS, ids=lambda p: p.replace(PYENV + '/', 'pyenv-'))
def interpreter(request):
    if not os.path.exists(request.param):
        pytest.skip(f'interpreter {request.param} is absent on this machine')
    return request.param


def test_call_and_served_import(interpreter):
    with Local('interp', python=interpreter) as tun:
        version = tun.call(python_version)
        assert isinstance(version, tuple) and version[0] in (2, 3)
        # A Python 2 agent sends an ASCII native str as text (see the codec docs).
        data = 'resource bytes\n' if version[0] == 2 else b'resource bytes\n'
        assert tun.call(served_call) == (8, 'abab', data)
        with pytest.raises(RemoteException) as info:
            tun.call(raise_in_served)
        assert info.value.type_name == 'ValueError'
        assert 'raise ValueError(message)' in info.value.remote_traceback
