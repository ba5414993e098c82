"""The wire codec: the agent's pure-Python msgpack subset against chopsticks._codec.

chopsticks/agent/_codec.py must emit the same bytes as the controller's
msgpack-based packb, read everything it emits, and do so on every remote
interpreter we support; the controller's unpackb must turn any bad input into
CodecError and nothing else.
"""
from __future__ import annotations

import collections
import enum
import glob
import math
import os
import subprocess
import types
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chopsticks import _codec
from chopsticks._codec import CodecError

AGENT_CODEC = Path(_codec.__file__).parent / 'agent' / '_codec.py'


def _load_agent_codec() -> types.SimpleNamespace:
    # Executed like the bootstrap does, outside the chopsticks package.
    namespace: dict[str, Any] = {'__name__': 'agent_codec'}
    exec(compile(AGENT_CODEC.read_text('ascii'), str(AGENT_CODEC), 'exec'), namespace)
    return types.SimpleNamespace(packb=namespace['packb'], unpackb=namespace['unpackb'])


agent = _load_agent_codec()


def assert_same(got: Any, want: Any) -> None:
    """Equal values of the same types, floats by repr (nan, -0.0), dicts in order."""
    if type(want) is bytearray:
        want = bytes(want)
    assert type(got) is type(want), (got, want)
    if isinstance(want, float):
        assert repr(got) == repr(want)
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
    elif isinstance(want, dict):
        assert len(got) == len(want)
        for (gk, gv), (wk, wv) in zip(got.items(), want.items()):
            assert_same(gk, wk)
            assert_same(gv, wv)
    else:
        assert got == want


def nested(depth: int, leaf: Any = 1, wrap: Any = list) -> Any:
    """leaf at object depth `depth`, inside depth - 1 containers."""
    for _ in range(depth - 1):
        leaf = wrap([leaf])
    return leaf


INT_BOUNDARIES = [
    0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1,
    2**64, -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**63,
    -2**63 - 1, 10**100, -10**100,
]
INTS = sorted({i + d for i in INT_BOUNDARIES for d in (-1, 0, 1)})
LENGTHS = [0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536]
FLOATS = [0.0, -0.0, 1.5, -2.25, 1e308, 5e-324, math.inf, -math.inf, math.nan, math.pi]


def native_msgpack(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


# ---------------------------------------------------------------- same bytes

@pytest.mark.parametrize('value', INTS, ids=str)
def test_int_bytes(value: int) -> None:
    data = agent.packb(value)
    assert data == _codec.packb(value)
    if -2**63 <= value < 2**64:
        assert data == native_msgpack(value)
    else:
        sign = '-' if value < 0 else ''
        hex_digits = (sign + format(abs(value), 'x')).encode()
        assert data == native_msgpack(msgpack.ExtType(4, hex_digits))
    assert_same(_codec.unpackb(data), value)
    assert_same(agent.unpackb(data), value)


@pytest.mark.parametrize('length', LENGTHS)
def test_str_bytes_and_containers_by_length(length: int) -> None:
    values = ['x' * length, 'é' * length, b'\xff' * length, bytearray(length),
              list(range(length)), {i: None for i in range(length)},
              tuple(range(length)), set(range(length)), frozenset(range(length))]
    for value in values:
        data = agent.packb(value)
        assert data == _codec.packb(value), type(value)
        if type(value) not in (tuple, set, frozenset):
            assert data == native_msgpack(value)
        assert_same(_codec.unpackb(data), value)
        assert_same(agent.unpackb(data), value)


@pytest.mark.parametrize('value', FLOATS, ids=repr)
def test_float_bytes(value: float) -> None:
    data = agent.packb(value)
    assert data == _codec.packb(value) == native_msgpack(value)
    assert_same(_codec.unpackb(data), value)
    assert_same(agent.unpackb(data), value)


def test_ext_wire_format() -> None:
    def ext(code: int, items: list[Any]) -> msgpack.ExtType:
        return msgpack.ExtType(code, native_msgpack(items))

    value = [(1, 'a'), {2}, frozenset([3]), ((4,),)]
    want = native_msgpack([ext(1, [1, 'a']), ext(2, [2]), ext(3, [3]),
                           ext(1, [ext(1, [4])])])
    assert agent.packb(value) == _codec.packb(value) == want


NESTED_VALUES = [
    None, True, False, [], {}, (), set(), frozenset(), '', b'',
    [1, [2, [3, (4, 5)]]],
    ((((((((1,),),),),),),),),  # deeper than the controller decodes inline
    {(1, 2): [3], frozenset({(4,), (5, 6)}): {'x': (7,)}, ((((((8,),),),),),): 9},
    [{'host': 'web1', 'addr': ('10.0.0.1', 22), 'tags': {'a', 'b'}}] * 3,
    {'big': [2**64, -2**63 - 1, (10**100,)], 'nan': math.nan, 'bytes': bytearray(b'\x00')},
    [((((((1,),),),),),), [((((((2,),),),),),)], {'k': ((((((3,),),),),),)}],
    nested(512), nested(512, wrap=tuple), nested(512, (), tuple),
    nested(512, wrap=lambda items: {'k': items[0]}), nested(511, wrap=frozenset),
]


@pytest.mark.parametrize('value', NESTED_VALUES)
def test_nested_values(value: Any) -> None:
    data = agent.packb(value)
    assert data == _codec.packb(value)
    assert_same(_codec.unpackb(data), value)
    assert_same(agent.unpackb(data), value)


hashables = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-2**200, 2**200)
    | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4).map(tuple) | st.frozensets(inner, max_size=4),
    max_leaves=12)
values = st.recursive(
    hashables | st.floats() | st.binary().map(bytearray),
    lambda inner: (st.lists(inner, max_size=6) | st.lists(inner, max_size=4).map(tuple)
                   | st.dictionaries(hashables, inner, max_size=5)
                   | st.sets(hashables, max_size=4) | st.frozensets(hashables, max_size=4)),
    max_leaves=40)
property_settings = settings(max_examples=400, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


@property_settings
@given(values)
def test_property_same_bytes_and_round_trips(value: Any) -> None:
    data = agent.packb(value)
    assert data == _codec.packb(value)
    assert_same(_codec.unpackb(data), value)
    assert_same(agent.unpackb(data), value)


# ---------------------------------------------------------------- subclasses, unsupported

class Point(collections.namedtuple('Point', 'x y')):
    pass


class Color(enum.IntEnum):
    RED = 1
    HUGE = 2**70


class Mode(str, enum.Enum):
    FAST = 'fast'


class Meters(float):
    pass


class Items(list):  # type: ignore[type-arg]
    pass


def test_subclasses_travel_as_their_base_type() -> None:
    ordered = collections.OrderedDict([('a', 1), ('b', 2), ('c', 3)])
    ordered.move_to_end('a')
    cases = [
        (Point(1, (2, 3)), (1, (2, 3))), (ordered, {'b': 2, 'c': 3, 'a': 1}),
        (collections.defaultdict(list, k=[1]), {'k': [1]}), (Color.RED, 1),
        (Color.HUGE, 2**70), (Mode.FAST, 'fast'), (Meters(2.5), 2.5), (Items([1, 2]), [1, 2]),
        ({Mode.FAST: [Color.RED, Point(Meters(1.0), Items())]}, {'fast': [1, (1.0, [])]}),
    ]
    for value, plain in cases:
        data = agent.packb(value)
        assert data == _codec.packb(value) == _codec.packb(plain), value
        assert_same(_codec.unpackb(data), plain)


class Foo:
    pass


class LongRepr:
    def __repr__(self) -> str:
        return 'L' * 1000


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError('no repr')


@pytest.mark.parametrize('value', [
    Foo(), LongRepr(), BadRepr(), 1j, range(3), memoryview(b'x'),
    type('Raw', (bytes,), {})(b'x'), type('Bag', (set,), {})(), type('Blob', (bytearray,), {})(),
    [1, {'k': (2, Foo())}],
], ids=lambda v: type(v).__name__)
def test_unsupported_types(value: Any) -> None:
    with pytest.raises(TypeError) as from_agent:
        agent.packb(value)
    message = str(from_agent.value)
    assert message.startswith('cannot encode value of type ')
    assert len(message) < 140
    if type(value) is not memoryview:  # msgpack packs it natively on the trusted side
        with pytest.raises(TypeError) as from_controller:
            _codec.packb(value)
        assert str(from_controller.value) == message


def test_unsupported_type_message() -> None:
    foo = Foo()
    expected = r"^cannot encode value of type 'Foo': <.*Foo object at 0x"
    with pytest.raises(TypeError, match=expected):
        agent.packb([foo])
    with pytest.raises(TypeError, match=r"'LongRepr': L{77}\.\.\.$"):
        agent.packb(LongRepr())
    with pytest.raises(TypeError, match=r"'BadRepr': <unrepresentable>$"):
        _codec.packb(BadRepr())


@pytest.mark.parametrize('wrap', [list, tuple, frozenset, lambda items: {'k': items[0]}],
                         ids=['list', 'tuple', 'frozenset', 'dict'])
def test_encode_depth_limit(wrap: Any) -> None:
    assert agent.packb(nested(512, wrap=wrap)) == _codec.packb(nested(512, wrap=wrap))
    for packb in (agent.packb, _codec.packb):
        with pytest.raises(ValueError, match='nested deeper than 512'):
            packb(nested(513, wrap=wrap))


def test_lone_surrogate_is_not_encodable() -> None:
    for packb in (agent.packb, _codec.packb):
        with pytest.raises(UnicodeEncodeError):
            packb(['\udcff'])


def test_encode_cycle_is_too_deep() -> None:
    loop: list[Any] = []
    loop.append(loop)
    for packb in (agent.packb, _codec.packb):
        with pytest.raises(ValueError, match='nested deeper than 512'):
            packb(loop)


# ---------------------------------------------------------------- bad input

def ext(code: int, payload: bytes) -> bytes:
    if code < 0:  # msgpack.ExtType refuses negative codes: write an ext 8 by hand
        return bytes([0xc7, len(payload), code & 0xff]) + payload
    return native_msgpack(msgpack.ExtType(code, payload))


def deep_tuples(levels: int) -> bytes:
    data = b'\xc0'
    for _ in range(levels):
        inner = b'\x91' + data
        data = b'\xc9' + len(inner).to_bytes(4, 'big') + b'\x01' + inner
    return data


BAD_INPUT = {
    'empty': b'',
    'reserved byte': b'\xc1',
    'truncated str': native_msgpack('hello')[:-1],
    'truncated array': native_msgpack([1, 2, 3])[:-1],
    'truncated int': b'\xcd\x01',
    'huge str header': b'\xdb\xff\xff\xff\xff',
    'huge array header': b'\xdd\xff\xff\xff\xff',
    'extra bytes': native_msgpack(1) + b'\x00',
    'invalid utf-8': b'\xa1\xff',
    'unknown ext': ext(5, b'\x00'),
    'ext 0': ext(0, b''),
    'negative ext': ext(-2, b'\x00'),
    'tuple of non-array': ext(1, native_msgpack(5)),
    'tuple of nothing': ext(1, b''),
    'tuple with trailing bytes': ext(1, native_msgpack([1]) + b'\xc0'),
    'unhashable map key': b'\x81\x90\xc0',
    'set of lists': ext(2, native_msgpack([[1]])),
    'set as map key': b'\x81' + ext(2, native_msgpack([1])) + b'\xc0',
    'deep arrays': b'\x91' * 512 + b'\xc0',
    'very deep arrays': b'\x91' * 100_000 + b'\xc0',
    'deep tuples': deep_tuples(600),
    'deep tuples as map key': b'\x81' + deep_tuples(600) + b'\xc0',
}
BAD_BIG_INTS = [b'', b'-', b'xyz', b'0x1f', b' 1f', b'1f\n', b'1_f', b'1F', b'+1f', b'--1',
                b'1' * 100_002]


@pytest.mark.parametrize('data', list(BAD_INPUT.values()), ids=list(BAD_INPUT))
def test_bad_input(data: bytes) -> None:
    with pytest.raises(CodecError):
        _codec.unpackb(data)
    with pytest.raises(ValueError):
        agent.unpackb(data)


@pytest.mark.parametrize('data', [
    native_msgpack(msgpack.Timestamp(1, 0)),
    native_msgpack([{'t': msgpack.Timestamp(1, 0)}]),
    ext(1, native_msgpack([msgpack.Timestamp(1, 0)])),
    ext(1, native_msgpack([[[[msgpack.ExtType(1, native_msgpack([msgpack.Timestamp(1, 0)]))]]]])),
], ids=['top', 'nested', 'in tuple', 'deep in tuple'])
def test_timestamp_rejected(data: bytes) -> None:
    # msgpack decodes ext -1 itself, without asking ext_hook.
    with pytest.raises(CodecError, match=r'ext type -1 \(timestamp\)'):
        _codec.unpackb(data)
    with pytest.raises(ValueError, match='ext type -1'):
        agent.unpackb(data)


@pytest.mark.parametrize('payload', BAD_BIG_INTS, ids=lambda p: repr(p[:12]))
def test_bad_big_int_payload(payload: bytes) -> None:
    with pytest.raises(CodecError, match='invalid big int payload'):
        _codec.unpackb(ext(4, payload))
    if len(payload) <= 100_001:  # the agent trusts the controller's sizes
        with pytest.raises(ValueError):
            agent.unpackb(ext(4, payload))


def test_decode_limits() -> None:
    assert _codec.unpackb(b'\x91' * 511 + b'\xc0') == nested(512, None)
    assert agent.unpackb(b'\x91' * 511 + b'\xc0') == nested(512, None)
    assert _codec.unpackb(_codec.packb([[1]]), max_depth=3) == [[1]]
    with pytest.raises(CodecError, match='nested deeper than 2'):
        _codec.unpackb(_codec.packb([[1]]), max_depth=2)
    with pytest.raises(CodecError, match='exceeds the limit'):
        _codec.unpackb(_codec.packb('x' * 100), max_size=50)
    data = _codec.packb({'k': (1, b'v')})
    for buffer in (bytearray(data), memoryview(data)):
        assert _codec.unpackb(buffer) == agent.unpackb(buffer) == {'k': (1, b'v')}
    for not_bytes in ('abc', 5, None):
        with pytest.raises(CodecError):
            _codec.unpackb(not_bytes)  # type: ignore[arg-type]
    assert issubclass(CodecError, ValueError)


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    data = draw(values.map(_codec.packb))
    at = draw(st.integers(0, len(data)))
    if draw(st.booleans()):
        return data[:at]
    junk = draw(st.binary(min_size=1, max_size=3))
    return data[:at] + junk + data[at + len(junk):]


@property_settings
@given(st.binary(max_size=64) | corrupted())
def test_property_garbage_raises_codec_error_only(data: bytes) -> None:
    try:
        value = _codec.unpackb(data)
    except CodecError:
        with pytest.raises(ValueError):
            agent.unpackb(data)
    else:
        assert _codec.packb(agent.unpackb(data)) == _codec.packb(value)


# ---------------------------------------------------------------- every interpreter

PYENV = Path('~/.pyenv/versions').expanduser()
SUPPORTED = ['2.7', '3.6', '3.7', '3.8', '3.9', '3.10', '3.11', '3.12', '3.13']


def _interpreters() -> list[Any]:
    """Every supported pyenv version (a glob when absent), any other pyenv one, the system's."""
    present = {Path(p).parent.parent.name: p for p in glob.glob(str(PYENV / '*/bin/python'))}
    params = []
    for minor in SUPPORTED:
        found = sorted(p for name, p in present.items() if name.startswith(minor + '.'))
        missing = str(PYENV / f'{minor}.*/bin/python')
        params.append(pytest.param(found[-1] if found else missing, id=f'pyenv-{minor}'))
    for name, path in sorted(present.items()):
        if not any(name.startswith(minor + '.') for minor in SUPPORTED):
            params.append(pytest.param(path, id=f'pyenv-{name}'))
    params.append(pytest.param('/usr/bin/python3', id='system-python3'))
    return params


# Runs under Python 2.7 too: no f-strings, and the chopsticks package is never
# imported (it is Python 3 controller code).
DRIVER = r'''
import sys
path, mode = sys.argv[1], sys.argv[2]
namespace = {'__name__': 'agent_codec'}
exec(compile(open(path, 'rb').read(), path, 'exec'), namespace)
packb, unpackb = namespace['packb'], namespace['unpackb']
stdin = getattr(sys.stdin, 'buffer', sys.stdin)
stdout = getattr(sys.stdout, 'buffer', sys.stdout)
value = unpackb(stdin.read())
if mode == 'py2str':
    value = [['ascii', '', '\xff\xfe', u'h\xe9', bytearray(b'a')],
             [type(item).__name__ for item in value]]
stdout.write(packb(value))
'''


def run_agent_codec(python: str, mode: str, data: bytes) -> bytes:
    if not os.path.exists(python):
        pytest.skip(f'interpreter not installed: {python}')
    proc = subprocess.run([python, '-E', '-S', '-c', DRIVER, str(AGENT_CODEC), mode],
                          input=data, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors='replace')
    return proc.stdout


def corpus(ordered_maps: bool) -> list[Any]:
    """Values whose re-encoding is deterministic in another process.

    Sets hold small ints only (string hashes differ per process), bytes hold
    a non-ASCII byte (Python 2 sends an ASCII str as msgpack str) and, for
    Python 2, dicts have at most one key (its dicts are unordered).
    """
    values: list[Any] = [None, True, False, INTS, FLOATS]
    for n in LENGTHS:
        values += ['x' * n, 'é' * n, '\U0001f600' * (n // 4), b'\xff' * max(n, 1),
                   list(range(n)), tuple(range(n)), set(range(min(n, 5))),
                   frozenset(range(min(n, 5)))]
        if ordered_maps:
            values.append({str(i): i for i in range(n)})
    values += [{'k': [1, (2, (3, (4, (5, (6,)))))]}, {(1, 2): (3,)}, {frozenset([1]): {4}},
               {((((((7,),),),),),): 8}, nested(511), nested(511, wrap=tuple),  # + 1 level: corpus
               (b'\xff' * 70_000,), {'a': ()}, [{}, [], ()]]
    return values


@pytest.mark.parametrize('python', _interpreters())
def test_agent_codec_on_interpreter(python: str) -> None:
    python2 = '/2.7.' in python
    for ordered_maps in (False, True) if not python2 else (False,):
        data = _codec.packb(corpus(ordered_maps))
        assert run_agent_codec(python, 'echo', data) == data
    # Whatever the dict order and set order, values survive the round trip.
    mixed = [{'b': 1, 'a': {'y': {'s', 't'}, 'x': ('u', b'v\xff')}},
             {str(i): frozenset([str(i)]) for i in range(100)}]
    assert _codec.unpackb(run_agent_codec(python, 'echo', _codec.packb(mixed))) == mixed


@pytest.mark.parametrize('python', [p for p in _interpreters() if p.id == 'pyenv-2.7'])
def test_python2_str_rule(python: str) -> None:
    out = run_agent_codec(python, 'py2str', _codec.packb(['text', b'bytes']))
    assert out == _codec.packb([['ascii', '', b'\xff\xfe', 'hé', b'a'], ['unicode', 'str']])
