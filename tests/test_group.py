"""The full Group API on local agents: set operations, filter, streaming, timeouts, Queue."""
from __future__ import annotations

import os
import time

import gevent
import pytest

from chopsticks import errors
from chopsticks.group import Group, GroupResult
from chopsticks.queue import AsyncResult, Queue
from chopsticks.tunnel import ErrorResult, Local
from tests.servedpkg.remote import agent_pid, append_line, sleep_then


class Local_(Local):
    """Another tunnel type: equal host names but unequal tunnels."""


def names(group):
    return [t.host for t in group]


@pytest.fixture
def silent_python(tmp_path):
    """An "interpreter" that starts and then never says a word."""
    path = tmp_path / 'silent-python'
    path.write_text('#!/bin/sh\nexec sleep 60\n')
    path.chmod(0o755)
    return str(path)


def test_len_iter_contains_tunnels():
    a, b = Local('a'), Local('b')
    group = Group([a, b, Local('a')])
    assert len(group) == 2
    assert list(group) == [a, b]
    assert group.tunnels == [a, b]
    assert a in group and 'b' in group and Local('z') not in group
    assert repr(group) == "Group([Local('a'), Local('b')])"


def test_hosts_mix_strings_and_tunnels():
    group = Group(['x', Local('y')], tunnel_class=Local)
    assert [type(t) for t in group] == [Local, Local]
    assert names(group) == ['x', 'y']
    with pytest.raises(TypeError):
        Group([42])
    with pytest.raises(TypeError):
        Group('abc')
    with pytest.raises(ValueError):
        Group([], concurrency=0)
    with pytest.raises(ValueError) as info:
        Group([Local('same'), Local('same', python='/usr/bin/python3'), Local_('same')])
    assert 'share the host name' in str(info.value)


def test_set_operations_keep_first_appearance_order():
    a, b, c, d = (Local(h) for h in 'abcd')
    g1 = Group([c, a, b])
    g2 = Group([b, d, a])
    assert names(g1 + g2) == ['c', 'a', 'b', 'd']
    assert names(g1 | g2) == ['c', 'a', 'b', 'd']
    assert names(g1 & g2) == ['a', 'b']
    assert names(g1 - g2) == ['c']
    assert names(g1 ^ g2) == ['c', 'd']
    assert names(g1.union(g2, Group([Local('e')]))) == ['c', 'a', 'b', 'd', 'e']
    assert names(g1.intersection(g2)) == ['a', 'b']
    assert names(g1.difference(g2)) == ['c']
    assert names(g1.symmetric_difference(g2)) == ['c', 'd']
    assert names(g1 + d) == ['c', 'a', 'b', 'd']
    assert names(d + g1) == ['d', 'c', 'a', 'b']
    assert names(g1 - a) == ['c', 'b']
    with pytest.raises(TypeError):
        g1 + 'a'


def test_filter_keeps_order():
    group = Group([Local('aa'), Local('b'), Local('cccc')])
    try:
        # os.getpid runs remotely and is never 0: every host is kept.
        assert names(group.filter(os.getpid)) == ['aa', 'b', 'cccc']
        assert names(group.filter(os.getpid, exclude=True)) == []
    finally:
        group.close()


def test_filter_by_remote_predicate():
    group = Group([Local('even0'), Local('odd'), Local('even2')])
    try:
        result = group.call(agent_pid)
        evens = {host for host, pid in result.items() if pid % 2 == 0}
        kept = group.filter(_pid_is_even)
        assert set(names(kept)) == evens
        assert set(names(group.filter(_pid_is_even, exclude=True))) == set(result) - evens
    finally:
        group.close()


def _pid_is_even():
    import os
    return os.getpid() % 2 == 0


def test_filter_raises_on_failure():
    group = Group([Local('ok'), Local('bad', python='/nonexistent/python')])
    try:
        with pytest.raises(errors.GroupError):
            group.filter(_pid_is_even)
    finally:
        group.close()


def test_connect_and_context_manager():
    with Group([Local('c1'), Local('c2')]) as group:
        assert all(t.connected for t in group)
    assert not any(t.connected for t in group)
    result = Group([Local('c3', python='/nonexistent/py')]).connect()
    assert isinstance(result['c3'], ErrorResult)


def test_streaming_and_callback():
    group = Group([Local(f's{i}') for i in range(4)])
    try:
        seen = []
        for host, value in group.stream(sleep_then, 0.01, 'v'):
            seen.append((host, value))
        assert sorted(seen) == [(f's{i}', 'v') for i in range(4)]
        calls = []
        result = group.call_with_callback(lambda h, v: calls.append(h), sleep_then, 0, 1)
        assert sorted(calls) == sorted(result)
        assert isinstance(result, GroupResult)
    finally:
        group.close()


def test_result_order_and_raise_failures_summary():
    group = Group([Local('z'), Local('y', python='/no/such/python'), Local('x')])
    try:
        result = group.call(sleep_then, 0, 1)
    finally:
        group.close()
    assert list(result) == ['z', 'y', 'x']
    assert dict(result.successful()) == {'z': 1, 'x': 1}
    assert [h for h, _ in result.failures()] == ['y']
    with pytest.raises(errors.RemoteException) as info:
        result.raise_failures()
    text = str(info.value)
    assert text.startswith('1/3 hosts failed: 1 InterpreterNotFound')
    assert '[y]' in text


def test_call_timeout_kills_and_returns_in_max_timeout():
    group = Group([Local(f'slow{i}') for i in range(3)] + [Local('fast')])
    try:
        group.connect()
        pids = group.call(agent_pid)
        started = time.monotonic()
        result = group.call(sleep_then, 30, 'late', timeout=1.0)
        elapsed = time.monotonic() - started
        assert elapsed < 2.5, elapsed
        for i in range(3):
            err = result[f'slow{i}']
            assert isinstance(err, ErrorResult)
            assert isinstance(err.exception, errors.CallTimeout)
        assert isinstance(result['fast'], ErrorResult)  # it slept too
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in pids.values()):
            gevent.sleep(0.05)
        assert not any(_alive(p) for p in pids.values()), 'timed-out agents still run'
        # The next call starts new agents.
        assert set(group.call(sleep_then, 0, 'again').values()) == {'again'}
    finally:
        group.close()


def test_mixed_timeouts_only_the_slow_fail():
    group = Group([Local('quick'), Local('slow')])
    try:
        group.connect()
        started = time.monotonic()
        results = {}

        def run(tunnel, seconds):
            try:
                results[tunnel.host] = tunnel.call(sleep_then, seconds, 'ok', timeout=1)
            except errors.CallTimeout as exc:
                results[tunnel.host] = exc
        gevent.joinall([gevent.spawn(run, group.tunnels[0], 0.1),
                        gevent.spawn(run, group.tunnels[1], 10)], timeout=10)
        assert results['quick'] == 'ok'
        assert isinstance(results['slow'], errors.CallTimeout)
        assert time.monotonic() - started < 2.5
    finally:
        group.close()


def _alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def test_silent_and_dead_hosts_beside_healthy_ones(silent_python):
    healthy = [Local(f'ok{i}') for i in range(5)]
    silent = Local('silent', python=silent_python, connect_timeout=1.5)
    dead = Local('dead', python='/nonexistent/python3')
    group = Group(healthy + [silent, dead])
    started = time.monotonic()
    try:
        result = group.call(sleep_then, 0, 'fine', timeout=5)
    finally:
        group.close()
    elapsed = time.monotonic() - started
    assert elapsed < 4, elapsed
    assert all(result[t.host] == 'fine' for t in healthy)
    assert isinstance(result['silent'].exception, errors.ConnectTimeout)
    assert isinstance(result['dead'].exception, errors.InterpreterNotFound)


def test_concurrency_bounds_work_in_flight():
    group = Group([Local(f'b{i}') for i in range(6)], concurrency=2)
    try:
        group.connect()
        started = time.monotonic()
        result = group.call(sleep_then, 0.5, 'x')
        elapsed = time.monotonic() - started
    finally:
        group.close()
    assert set(result.values()) == {'x'}
    assert 1.4 < elapsed < 3.5, elapsed  # 6 hosts, 2 at a time, 0.5 s each


def test_put_and_fetch_templates(tmp_path):
    src = tmp_path / 'f.txt'
    src.write_text('payload')
    group = Group([Local('p1'), Local('p2')])
    try:
        put = group.put(str(src), str(tmp_path / 'dest.txt'))
        assert {v['size'] for v in put.values()} == {7}
        got = group.fetch(str(tmp_path / 'dest.txt'), str(tmp_path / 'out-{host}.txt'))
    finally:
        group.close()
    assert {v['local_path'] for v in got.values()} == {str(tmp_path / 'out-p1.txt'),
                                                      str(tmp_path / 'out-p2.txt')}


def test_queue_orders_per_host_and_runs_hosts_in_parallel(tmp_path):
    fast, slow = Local('qfast'), Local('qslow')
    log_fast, log_slow = tmp_path / 'fast.log', tmp_path / 'slow.log'
    queue = Queue()
    finished = []
    for i in range(5):
        queue.call(fast, append_line, str(log_fast), f'f{i}').with_callback(
            lambda v: finished.append(('fast', v, time.monotonic())))
    queue.call(slow, sleep_then, 1.0, None)
    last_slow = queue.call(slow, append_line, str(log_slow), 's-after-sleep')
    last_slow.with_callback(lambda v: finished.append(('slow', v, time.monotonic())))
    started = time.monotonic()
    try:
        queue.run()
    finally:
        fast.close()
        slow.close()
    assert log_fast.read_text().split() == [f'f{i}' for i in range(5)]
    assert last_slow.value == 's-after-sleep'
    fast_done = max(t for who, _, t in finished if who == 'fast')
    slow_done = max(t for who, _, t in finished if who == 'slow')
    assert fast_done - started < 0.9 < slow_done - started


def test_queue_group_values_and_callbacks_enqueue_more(tmp_path):
    group = Group([Local('g1'), Local('g2')])
    queue = Queue()
    order = []
    src = tmp_path / 'src'
    src.write_text('abc')

    def then_more(result):
        order.append('first')
        assert isinstance(result, GroupResult)
        queue.call(group, sleep_then, 0, 'second').with_callback(
            lambda r: order.append(('second', dict(r))))

    res = queue.call(group, sleep_then, 0, 'first').with_callback(then_more)
    connected = queue.connect(group.tunnels[0])
    put = queue.put(group, str(src), str(tmp_path / 'dst'))
    fetched = queue.fetch(group, str(src), str(tmp_path / 'f-{host}'))
    try:
        queue.run()
    finally:
        group.close()
    assert dict(res.value) == {'g1': 'first', 'g2': 'first'}
    assert connected.value is None
    assert all(v['size'] == 3 for v in put.value.values())
    assert sorted(fetched.value) == ['g1', 'g2']
    assert order == ['first', ('second', {'g1': 'second', 'g2': 'second'})]
    with pytest.raises(ValueError):
        AsyncResult().value


def test_queue_failure_is_an_error_result():
    bad = Local('qbad', python='/nonexistent/python')
    queue = Queue()
    res = queue.call(bad, sleep_then, 0, 1)
    queue.run()
    assert isinstance(res.value, ErrorResult)
