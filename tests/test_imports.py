"""The import server and hook: one shared cache, what is served, what is refused."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from chopsticks._imports import SERVER
from chopsticks.group import Group
from chopsticks.tunnel import Local, RemoteException
from tests.servedpkg.remote import (import_module, msgpack_pack, read_resource,
                                    use_controller_api, value_of)


def test_each_file_read_once_for_many_tunnels(tmp_path, monkeypatch):
    pkg = tmp_path / 'countedpkg'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('VALUE = 1\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    init = str(pkg / '__init__.py')
    group = Group([Local(f'cache{i}') for i in range(6)])
    try:
        result = group.call(value_of, 'countedpkg', 'VALUE')
        assert dict(result) == {f'cache{i}': 1 for i in range(6)}
        assert SERVER.cache.read_counts[init] == 1
        # A changed file is read again, once, and served new.
        (pkg / '__init__.py').write_text('VALUE = 22\n')
        os.utime(pkg / '__init__.py', ns=(time.time_ns(), time.time_ns() + 10**9))
        group.close()
        result = group.call(value_of, 'countedpkg', 'VALUE')
        assert set(result.values()) == {22}
        assert SERVER.cache.read_counts[init] == 2
    finally:
        group.close()


def test_cache_is_bounded():
    from chopsticks._imports import SourceCache
    cache = SourceCache(max_bytes=10_000)
    here = Path(__file__).parent
    files = sorted(here.glob('*.py'))[:6]
    for path in files:
        cache.read(str(path))
    assert cache.total <= max(10_000, max(p.stat().st_size for p in files))


def test_chopsticks_controller_api_is_a_stand_in_on_agents():
    with Local('stub') as tun:
        message = tun.call(use_controller_api)
    assert 'chopsticks.tunnel.Local is part of the chopsticks controller' in message


def test_resources_only_from_served_packages(tmp_path):
    secret = tmp_path / 'secret.txt'
    secret.write_text('do not serve')
    with Local('res') as tun:
        assert tun.call(import_module, 'tests.servedpkg').endswith('__init__.py')
        served = str(Path(__file__).parent / 'servedpkg' / 'data' / 'resource.txt')
        assert tun.call(read_resource, served) == b'resource bytes\n'
        refused = tun.call(read_resource, str(secret))
        assert refused.startswith('refused') and 'res' in refused
        assert tun.call(read_resource, '/etc/passwd').startswith('refused')


def test_unknown_module_is_a_plain_import_error():
    with Local('missing') as tun:
        with pytest.raises(RemoteException) as info:
            tun.call(import_module, 'no_such_module_anywhere')
    assert info.value.type_name in ('ModuleNotFoundError', 'ImportError')


def test_c_extension_not_served_is_a_clear_error():
    # greenlet's C core is built for the controller's 3.11 only: a 3.12 agent
    # has no copy it can load, and must say so.
    python = os.path.expanduser('~/.pyenv/versions/3.12.1/bin/python')
    if not os.path.exists(python):
        pytest.skip(f'{python} is absent')
    with Local('noext', python=python) as tun:
        with pytest.raises(RemoteException) as info:
            tun.call(import_module, 'greenlet._greenlet')
    message = str(info.value)
    assert info.value.type_name == 'ImportError'
    assert 'greenlet._greenlet' in message and "'noext'" in message
    assert 'C extension' in message


def test_package_with_c_speedups_falls_back_to_pure_python():
    # msgpack is served; its C extension is absent remotely, so the package's
    # own fallback to its pure-Python implementation takes over.
    with Local('fallback') as tun:
        packed, version = tun.call(msgpack_pack, [1, 'two'])
    assert packed == b'\x92\x01\xa3two'
    assert tuple(version)[:1] == (1,)


def test_remote_copy_of_c_extension_is_used():
    # The pyenv interpreter that runs this controller has greenlet installed:
    # as an agent it must load its own copy of greenlet._greenlet.
    with Local('hasext', python=sys.executable) as tun:
        origin = tun.call(import_module, 'greenlet._greenlet')
    assert origin.endswith('.so')


def test_namespace_directories_grant_no_resources(tmp_path, monkeypatch):
    # A directory on sys.path is importable as a namespace package; it must not
    # make its files readable by an agent.
    (tmp_path / 'nsdir').mkdir()
    (tmp_path / 'nsdir' / 'secret.txt').write_text('private')
    monkeypatch.syspath_prepend(str(tmp_path))
    with Local('ns') as tun:
        tun.call(import_module, 'nsdir')
        refused = tun.call(read_resource, str(tmp_path / 'nsdir' / 'secret.txt'))
    assert refused.startswith('refused')


def test_resources_are_per_tunnel(tmp_path, monkeypatch):
    (tmp_path / 'respkg').mkdir()
    (tmp_path / 'respkg' / '__init__.py').write_text('')
    (tmp_path / 'respkg' / 'data.txt').write_text('for the importer only')
    monkeypatch.syspath_prepend(str(tmp_path))
    resource = str(tmp_path / 'respkg' / 'data.txt')
    with Local('imported') as first, Local('other') as second:
        assert first.call(import_module, 'respkg')
        assert first.call(read_resource, resource) == b'for the importer only'
        # The second agent never imported the package: the file is not its to read.
        assert second.call(read_resource, resource).startswith('refused')
