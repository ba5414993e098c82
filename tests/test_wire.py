"""The wire from the controller's side: bootstrap, op table, hostile agents."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from chopsticks import _bootstrap, errors
from chopsticks.agent import _wire as agent_wire
from chopsticks.group import Group
from chopsticks.tunnel import ErrorResult, Local

HERE = Path(__file__).parent
HOSTILE = HERE / 'scripts' / 'hostile_agent.py'


def test_bootstrap_is_small_and_one_line():
    size = len(_bootstrap.stage2())
    assert size < 12 * 1024, f'stage 2 is {size} bytes compressed'
    stage1 = _bootstrap.stage1()
    assert '\n' not in stage1 and len(stage1) < 120
    assert f'f.read({size})' in stage1


def test_stage2_is_ascii_python():
    source = zlib.decompress(_bootstrap.stage2()).decode('ascii')
    compile(source, 'stage2', 'exec')


def test_bench_script_prints_size():
    out = subprocess.run([sys.executable, str(HERE.parent / 'bench' / 'bootstrap_size.py')],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert str(len(_bootstrap.stage2())) in out.stdout


def test_op_table_has_no_duplicates():
    ops = {name: value for name, value in vars(agent_wire).items() if name.startswith('OP_')}
    assert len(set(ops.values())) == len(ops)
    controller_to_agent = [v for v in ops.values() if v < 64]
    agent_to_controller = [v for v in ops.values() if v >= 64]
    assert controller_to_agent and agent_to_controller


def test_handshake_rejects_a_silent_agent(tmp_path):
    silent = tmp_path / 'silent'
    silent.write_text('#!/bin/sh\nexec sleep 30\n')
    silent.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(errors.ConnectTimeout):
        Local('silent', python=str(silent), connect_timeout=1).connect()
    assert time.monotonic() - started < 4


def test_handshake_rejects_wrong_protocol(tmp_path):
    fake = tmp_path / 'fake'
    # The sync marker, then a hello frame (op 64) whose body is msgpack {'v': 99}.
    fake.write_text('#!/bin/sh\nprintf "\\000\\000chopsticks-agent\\000\\000"\n'
                    'printf "\\000\\000\\000\\004\\000\\000\\000\\000\\100'
                    '\\201\\241v\\143"\nexec cat >/dev/null\n')
    fake.chmod(0o755)
    with pytest.raises(errors.ProtocolError) as info:
        Local('fake', python=str(fake), connect_timeout=5).connect()
    assert 'protocol' in str(info.value)


def hostile(tmp_path, mode):
    wrapper = tmp_path / f'hostile-{mode}'
    wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/python3 {HOSTILE} {mode} "$@"\n')
    wrapper.chmod(0o755)
    return Local(f'hostile-{mode}', python=str(wrapper))


@pytest.mark.parametrize('mode', ['garbage', 'oversize', 'pickle', 'bad-ext', 'deep',
                                  'unknown-op'])
def test_hostile_agent_fails_only_its_tunnel(tmp_path, mode):
    canary = tmp_path / 'pwned'
    bad = hostile(tmp_path, mode)
    good = Local('good')
    group = Group([bad, good])
    os.chdir(tmp_path)
    try:
        started = time.monotonic()
        result = group.call(time.time, timeout=10)
        elapsed = time.monotonic() - started
    finally:
        group.close()
        os.chdir(HERE.parent)
    assert isinstance(result['good'], float)
    err = result[bad.host]
    assert isinstance(err, ErrorResult)
    if mode == 'pickle':
        # A pickle is not msgpack: the frame is undecodable, nothing is unpickled.
        assert not canary.exists()
    assert isinstance(err.exception, (errors.ProtocolError, errors.ConnectionLost)), err.msg
    assert elapsed < 8
    if mode in ('garbage', 'oversize', 'bad-ext', 'deep', 'unknown-op'):
        assert isinstance(err.exception, errors.ProtocolError), err.msg


def test_output_before_the_agent_is_skipped_and_shown(tmp_path, capfd):
    chatty = tmp_path / 'chatty-python'
    chatty.write_text('#!/bin/sh\necho "Welcome to the motd"\nexec /usr/bin/python3 "$@"\n')
    chatty.chmod(0o755)
    with Local('chatty', python=str(chatty)) as tun:
        assert tun.call(len, 'abc') == 3
    assert '[chatty] (stdout before the agent started) Welcome to the motd' in capfd.readouterr().err


def test_endless_noise_is_a_protocol_error(tmp_path):
    noisy = tmp_path / 'noisy-python'
    noisy.write_text('#!/bin/sh\nexec yes "noise"\n')
    noisy.chmod(0o755)
    with pytest.raises(errors.ProtocolError) as info:
        Local('noisy', python=str(noisy)).connect()
    assert 'no agent handshake' in str(info.value)
