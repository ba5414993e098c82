"""The engine end to end on Local agents: calls, results, errors, lifecycle, stdio."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import gevent
import pytest

import chopsticks
from chopsticks import errors
from chopsticks.facts import (cpu_count, hostname, ip, memory, os_release, python_executable,
                              python_version)
from chopsticks.group import Group, GroupResult
from chopsticks.tunnel import ErrorResult, Local, RemoteException

HERE = Path(__file__).parent
REPO = HERE.parent


@pytest.fixture
def tun():
    with Local('engine') as t:
        yield t


class Unsupported:
    def __repr__(self):
        return '<Unsupported thing>'


def returns_unsupported():
    return Unsupported()


def returns_value(value):
    return value


def raise_value_error():
    raise ValueError('it went wrong')


def slow(seconds, value):
    time.sleep(seconds)
    return value


def noisy():
    print('printed to stdout')
    sys.stdout.flush()
    os.system('echo from a child process')
    return [os.readlink('/proc/self/fd/0'), os.readlink('/proc/self/fd/1')]


def write_stderr(text):
    sys.stderr.write(text)
    sys.stderr.flush()
    return True


def import_served():
    import tests.servedpkg
    return tests.servedpkg.double(21), tests.servedpkg.where(), tests.servedpkg.resource()


def traceback_from_served():
    import tests.servedpkg
    tests.servedpkg.fails('served failure')


def test_call_time(tun):
    before = time.time()
    value = tun.call(time.time)
    assert isinstance(value, float)
    assert before - 1 < value < time.time() + 1


def test_call_facts(tun):
    assert tun.call(python_version)[:2] == (3, 11)
    assert tun.call(python_version, short=True) == '3.11'
    assert tun.call(python_executable) == '/usr/bin/python3'
    assert tun.call(hostname) == os.uname().nodename
    assert isinstance(tun.call(ip), str)
    assert tun.call(os_release)['system'] == 'Linux'
    assert tun.call(cpu_count) >= 1
    mem = tun.call(memory)
    assert set(mem) == {'total', 'available', 'free'} and mem['total'] > 0


@pytest.mark.parametrize('value', [
    None, True, False, 0, -1, 2**64, -(2**70), 10**100, 1.5, float('inf'), '', 'text',
    'ünïcødé', b'', b'\x00\xffbytes', [], [1, [2, [3]]], (), (1, (2, 'x')), {1, 2},
    frozenset({'a'}), {'k': {'nested': [1, (2, 3)]}, (1, 2): b'tuple key', 3: None},
    [{'a': {1, 2}}, (frozenset(), b'')],
])
def test_result_types_round_trip(tun, value):
    result = tun.call(returns_value, value)
    assert result == value
    assert type(result) is type(value)


def test_tuple_stays_tuple_and_bytes_stay_bytes(tun):
    result = tun.call(returns_value, {'t': (1, 2), 'b': b'raw', 'l': [(3,)]})
    assert type(result['t']) is tuple
    assert type(result['b']) is bytes
    assert type(result['l'][0]) is tuple


def test_arguments_any_picklable(tun):
    import datetime
    import decimal
    arg = {'when': datetime.date(2020, 1, 2), 'd': decimal.Decimal('1.5')}
    assert tun.call(returns_value, repr(arg)) == repr(arg)
    assert tun.call(str, datetime.date(2020, 1, 2)) == '2020-01-02'


def test_unsupported_result_is_clear_and_tunnel_survives(tun):
    with pytest.raises(errors.UnsupportedResult) as info:
        tun.call(returns_unsupported)
    message = str(info.value)
    assert 'engine' in message
    assert 'Unsupported' in message
    assert '<Unsupported thing>' in message
    assert tun.call(returns_value, 5) == 5


def test_remote_exception(tun):
    with pytest.raises(RemoteException) as info:
        tun.call(raise_value_error)
    exc = info.value
    assert exc.host == 'engine'
    assert exc.type_name == 'ValueError'
    assert exc.msg == 'it went wrong'
    assert 'raise_value_error' in exc.remote_traceback
    assert "raise ValueError('it went wrong')" in exc.remote_traceback
    assert exc.tb == exc.remote_traceback
    assert tun.call(returns_value, 1) == 1


def test_remote_traceback_quotes_served_source(tun):
    with pytest.raises(RemoteException) as info:
        tun.call(traceback_from_served)
    tb = info.value.remote_traceback
    assert 'servedpkg/__init__.py' in tb
    assert 'raise ValueError(message)  # the traceback must quote this line' in tb


def test_served_package_imports(tun):
    value, where, data = tun.call(import_served)
    assert value == 42
    assert where == str(HERE / 'servedpkg' / '__init__.py')
    assert data == b'resource bytes\n'


def test_group_error_result():
    group = Group([Local('g1'), Local('g2')])
    try:
        result = group.call(raise_value_error)
    finally:
        group.close()
    assert isinstance(result, GroupResult)
    for host in ('g1', 'g2'):
        err = result[host]
        assert isinstance(err, ErrorResult)
        assert 'it went wrong' in err.msg
        assert 'raise_value_error' in err.tb


def test_main_functions_from_a_script():
    out = subprocess.run([sys.executable, str(HERE / 'scripts' / 'main_functions.py')],
                         capture_output=True, text=True, timeout=60, cwd=REPO,
                         env={**os.environ, 'PYTHONPATH': str(REPO)})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result['globals'] == 2 * 3 + 5 + 1
    assert result['class'] == 7
    assert result['closure'] == 15
    assert result['recursive'] == 5
    assert result['decorated'] == ['tagged', 2]  # JSON turns the tuple into a list
    assert result['calls_decorated'] == ['tagged', 2]
    assert 'lambda' in result['lambda'] and 'use def' in result['lambda']


def test_lifecycle_lazy_connect_close_reconnect():
    tun = Local('life')
    assert not tun.connected
    assert tun.call(returns_value, 1) == 1
    assert tun.connected
    tun.close()
    assert not tun.connected
    tun.close()
    assert tun.call(returns_value, 2) == 2
    tun.close()
    with Local('ctx') as t:
        assert t.connected
    assert not t.connected


def test_repr_eq_hash():
    assert repr(Local('x')) == "Local('x')"
    assert Local('x') == Local('x')
    assert Local('x') != Local('y')
    assert hash(Local('x')) == hash(Local('x'))
    assert len({Local('x'), Local('x'), Local('y')}) == 2
    assert Local() == Local('localhost')


def test_python_per_instance_and_per_class():
    alt = '/root/.pyenv/versions/3.12.1/bin/python'
    if not os.path.exists(alt):
        pytest.skip(f'{alt} is absent')
    with Local('pi', python=alt) as t:
        assert t.call(python_executable) == alt

    class MyLocal(Local):
        pass

    MyLocal.python3 = alt
    try:
        with MyLocal('pc') as t:
            assert t.call(python_executable) == alt
    finally:
        del MyLocal.python3
    with Local('default') as t:
        assert t.call(python_executable) == '/usr/bin/python3'


def test_stdio_is_dev_null(tun):
    fd0, fd1 = tun.call(noisy)
    assert fd0 == fd1 == '/dev/null'
    assert tun.call(returns_value, 'still fine') == 'still fine'


def test_stderr_is_prefixed_and_logged(tun, capfd, caplog):
    with caplog.at_level(logging.INFO, logger='chopsticks'):
        assert tun.call(write_stderr, 'line one\nline two\n')
        deadline = time.monotonic() + 5
        while 'line two' not in caplog.text and time.monotonic() < deadline:
            gevent.sleep(0.02)
    err = capfd.readouterr().err
    assert '[engine] line one\n' in err
    assert '[engine] line two\n' in err
    assert '[engine] line two' in caplog.text


def test_concurrent_calls_on_one_tunnel(tun):
    started = time.monotonic()
    finished = []

    def run(seconds, value):
        assert tun.call(slow, seconds, value) == value
        finished.append((value, time.monotonic() - started))

    greenlets = [gevent.spawn(run, 3.0, 'slow')]
    greenlets += [gevent.spawn(run, 0.01, f'fast{i}') for i in range(5)]
    gevent.joinall(greenlets, timeout=20, raise_error=True)
    order = [value for value, _ in finished]
    assert order[-1] == 'slow'
    assert all(t < 2.5 for value, t in finished if value != 'slow')


def test_imports_served_while_a_call_runs(tun):
    slow_call = gevent.spawn(tun.call, slow, 1.0, 'done')
    gevent.sleep(0.1)
    assert tun.call(import_served)[0] == 42
    assert not slow_call.ready()
    assert slow_call.get(timeout=5) == 'done'


def test_group_basic():
    group = Group([Local('a'), Local('b'), Local('c')])
    try:
        result = group.call(time.time)
    finally:
        group.close()
    assert isinstance(result, dict) and set(result) == {'a', 'b', 'c'}
    assert sorted(host for host, _ in result.successful()) == ['a', 'b', 'c']
    assert list(result.failures()) == []
    result.raise_failures()


def test_group_host_that_cannot_connect_is_a_failure():
    group = Group([Local('ok'), Local('broken', python='/nonexistent/python3')])
    try:
        result = group.call(returns_value, 3)
    finally:
        group.close()
    assert result['ok'] == 3
    assert isinstance(result['broken'], ErrorResult)
    assert 'InterpreterNotFound' in result['broken'].msg
    assert [h for h, _ in result.failures()] == ['broken']
    with pytest.raises(errors.GroupError) as info:
        result.raise_failures()
    assert '1/2 hosts failed: 1 InterpreterNotFound' in str(info.value)
    assert 'broken' in str(info.value)


def test_interpreter_not_found():
    with pytest.raises(errors.InterpreterNotFound) as info:
        Local('nope', python='/nonexistent/python3').connect()
    assert 'nope' in str(info.value)


def test_top_level_reexports():
    import chopsticks.group
    import chopsticks.queue
    import chopsticks.tunnel
    assert chopsticks.Local is chopsticks.tunnel.Local
    assert chopsticks.Group is chopsticks.group.Group
    assert chopsticks.GroupResult is chopsticks.group.GroupResult
    assert chopsticks.Queue is chopsticks.queue.Queue
    assert chopsticks.RemoteException is chopsticks.tunnel.RemoteException
    assert chopsticks.ErrorResult is chopsticks.tunnel.ErrorResult
    assert chopsticks.Sudo is chopsticks.tunnel.Sudo


def test_no_monkey_patching(tun):
    import socket
    import gevent.monkey
    tun.call(time.time)
    assert not gevent.monkey.is_module_patched('socket')
    assert not gevent.monkey.is_module_patched('threading')
    assert socket.socket.__module__ == 'socket'
    assert threading.Lock is threading._allocate_lock or 'gevent' not in repr(threading.Lock)


def test_no_os_thread_per_tunnel():
    before = threading.active_count()
    group = Group([Local(f'th{i}') for i in range(20)])
    try:
        group.call(time.time).raise_failures()
        assert threading.active_count() == before
    finally:
        group.close()


def test_more_than_1024_fds_no_select_limit():
    # Push the tunnel's fds past 1024: select() would fail, epoll does not.
    pipes = [os.pipe() for _ in range(520)]
    try:
        with Local('highfd') as t:
            assert t.call(returns_value, 'ok') == 'ok'
            assert t._conn.fd > 1024
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)


def test_running_out_of_fds_fails_only_the_hosts_affected():
    out = subprocess.run([sys.executable, str(HERE / 'scripts' / 'fd_exhaustion.py'), '64', '60'],
                         capture_output=True, text=True, timeout=120, cwd=REPO,
                         env={**os.environ, 'PYTHONPATH': str(REPO)})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    kinds = result['kinds']
    # How many fit depends on how many spawns overlap; some must, some must not.
    assert kinds.get('ok', 0) >= 1, result
    assert kinds.get('FileDescriptorsExhausted', 0) >= 1, result
    assert set(kinds) <= {'ok', 'FileDescriptorsExhausted'}, result
    assert 'file descriptors' in result['messages'][0]
    assert result['after_close_ok']


def test_agent_dying_mid_call_is_connection_lost_then_reconnects():
    from tests.servedpkg.remote import die
    with Local('dies') as tun:
        with pytest.raises(errors.ConnectionLost) as info:
            tun.call(die, 'last words')
        assert info.value.host == 'dies'
        assert tun.call(returns_value, 'back') == 'back'


def test_stderr_control_characters_are_escaped_and_echo_can_be_off(capfd, caplog):
    with Local('esc') as tun:
        tun.call(write_stderr, 'bell\x07 escape\x1b[31m red\n')
        tun.close()
    err = capfd.readouterr().err
    assert '[esc] bell\\x07 escape\\x1b[31m red' in err
    quiet = Local('quiet')
    quiet.echo_stderr = False
    with caplog.at_level(logging.INFO, logger='chopsticks'):
        with quiet:
            quiet.call(write_stderr, 'only logged\n')
    assert 'only logged' not in capfd.readouterr().err
    assert '[quiet] only logged' in caplog.text
