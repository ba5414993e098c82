"""put and fetch: exact return shapes, checksums, atomicity, bounded memory."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chopsticks import errors
from chopsticks.group import Group
from chopsticks.tunnel import ErrorResult, Local

HERE = Path(__file__).parent


def sha1(path):
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def tun():
    with Local('files') as t:
        yield t


def leftovers(directory):
    return [p.name for p in Path(directory).iterdir() if p.name.endswith('.part')]


def test_put_returns_exact_shape(tun, tmp_path):
    src = tmp_path / 'src.bin'
    src.write_bytes(os.urandom(700_000))
    dest = tmp_path / 'dest.bin'
    result = tun.put(str(src), str(dest), mode=0o600)
    assert set(result) == {'remote_path', 'sha1sum', 'size'}
    assert result == {'remote_path': str(dest), 'sha1sum': sha1(src), 'size': 700_000}
    assert dest.read_bytes() == src.read_bytes()
    assert dest.stat().st_mode & 0o777 == 0o600


def test_put_default_mode_and_temp_path(tun, tmp_path):
    src = tmp_path / 'src.txt'
    src.write_text('hello')
    dest = tmp_path / 'd.txt'
    tun.put(str(src), str(dest))
    assert dest.stat().st_mode & 0o777 == 0o644
    result = tun.put(str(src))
    try:
        assert Path(result['remote_path']).read_text() == 'hello'
    finally:
        os.unlink(result['remote_path'])


def test_fetch_returns_exact_shape(tun, tmp_path):
    src = tmp_path / 'remote.bin'
    src.write_bytes(os.urandom(1_000_001))
    local = tmp_path / 'local.bin'
    result = tun.fetch(str(src), str(local))
    assert set(result) == {'local_path', 'remote_path', 'sha1sum', 'size'}
    assert result == {'local_path': str(local), 'remote_path': str(src),
                      'sha1sum': sha1(src), 'size': 1_000_001}
    assert local.read_bytes() == src.read_bytes()


def test_fetch_default_local_path(tun, tmp_path):
    src = tmp_path / 'r.txt'
    src.write_text('data')
    result = tun.fetch(str(src))
    try:
        assert Path(result['local_path']).read_text() == 'data'
    finally:
        os.unlink(result['local_path'])


def test_empty_file(tun, tmp_path):
    src = tmp_path / 'empty'
    src.write_bytes(b'')
    assert tun.put(str(src), str(tmp_path / 'e2'))['size'] == 0
    assert tun.fetch(str(src), str(tmp_path / 'e3'))['size'] == 0


def test_put_failure_leaves_nothing(tun, tmp_path):
    src = tmp_path / 'src'
    src.write_bytes(b'x' * 10)
    with pytest.raises(errors.RemoteFileError):
        tun.put(str(src), str(tmp_path / 'missing-dir' / 'f'))
    with pytest.raises(errors.RemoteFileError):
        tun.put(str(src), str(tmp_path))  # a directory
    assert leftovers(tmp_path) == []
    assert tun.call(len, 'usable') == 6


def test_put_interrupted_leaves_no_partial_file(tmp_path):
    src = tmp_path / 'big'
    src.write_bytes(os.urandom(8 * 1024 * 1024))
    dest = tmp_path / 'dest'
    tun = Local('interrupted')
    tun.connect()
    with pytest.raises(errors.CallTimeout):
        tun.put(str(src), str(dest), timeout=0.001)
    tun.close()
    assert not dest.exists()
    # The killed agent may leave its temporary file: never under the final name.
    assert not any(p.name == 'dest' for p in tmp_path.iterdir())


def test_fetch_failure_leaves_nothing(tun, tmp_path):
    local = tmp_path / 'out'
    with pytest.raises(errors.RemoteFileError):
        tun.fetch(str(tmp_path / 'no-such-file'), str(local))
    assert not local.exists()
    assert leftovers(tmp_path) == []


def test_group_put_and_fetch_with_template(tmp_path):
    src = tmp_path / 'payload'
    src.write_bytes(os.urandom(300_000))
    group = Group([Local('h1'), Local('h2'), Local('h3')])
    try:
        puts = group.put(str(src), str(tmp_path / 'copy'))
        assert all(v['sha1sum'] == sha1(src) for _, v in puts.successful())
        fetched = group.fetch(str(tmp_path / 'copy'), str(tmp_path / 'back-{host}'))
        with pytest.raises(ValueError):
            group.fetch(str(src), str(tmp_path / 'same-for-all'))
    finally:
        group.close()
    assert sorted(fetched) == ['h1', 'h2', 'h3']
    for host, value in fetched.items():
        assert value['local_path'] == str(tmp_path / f'back-{host}')
        assert sha1(value['local_path']) == sha1(src)


def test_group_fetch_failure_is_per_host(tmp_path):
    (tmp_path / 'exists').write_text('x')
    group = Group([Local('f1')])
    try:
        result = group.fetch(str(tmp_path / 'nope'), str(tmp_path / '{host}.out'))
    finally:
        group.close()
    assert isinstance(result['f1'], ErrorResult)


def test_large_transfer_has_bounded_memory(tmp_path):
    src = tmp_path / 'large'
    size = 256 * 1024 * 1024
    with open(src, 'wb') as f:
        block = os.urandom(1024 * 1024)
        for _ in range(size // len(block)):
            f.write(block)
    out = subprocess.run(
        [sys.executable, str(HERE / 'scripts' / 'big_transfer.py'), str(src),
         str(tmp_path / 'remote'), str(tmp_path / 'back')],
        capture_output=True, text=True, timeout=240, cwd=HERE.parent,
        env={**os.environ, 'PYTHONPATH': str(HERE.parent)})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result['put']['size'] == size and result['fetch']['size'] == size
    assert result['put']['sha1sum'] == result['fetch']['sha1sum']
    # 256 MiB moved; each side must stay far below that.
    growth = result['controller_kib'] - result['controller_before_kib']
    assert growth < 64 * 1024, result
    assert result['agent_kib'] < 80 * 1024, result
