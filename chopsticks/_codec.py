"""Controller-side wire codec: the one place where an agent's bytes become objects.

This is a security boundary.  An agent may be broken or hostile, so what it
sends is decoded by msgpack into a closed set of types and is never unpickled,
eval'd or exec'd.  Every way decoding can fail (malformed or truncated bytes,
an unknown ext code, too deep, too big, an unhashable map key or set item)
raises the one exception CodecError, so a bad agent fails its own tunnel and
nothing else.

The closed type table, shared with ``chopsticks/agent/_codec.py``, whose
``packb`` emits the same bytes as ``packb`` here for the same value:

    Python                  msgpack
    None, bool, float       nil, true/false, float 64
    int                     int, smallest format, when in [-2**63, 2**64 - 1]
    str                     str
    bytes, bytearray        bin (decoded as bytes)
    list, dict              array, map (any supported hashable key)

    ext code  Python type   payload
    1         tuple         the items packed as a msgpack array
    2         set           the items packed as a msgpack array
    3         frozenset     the items packed as a msgpack array
    4         int           outside the range above: ASCII lowercase hex
                            digits, with a leading '-' if negative

Any other ext code, msgpack's timestamp (-1) included, is rejected.

Encoding: subclasses of int, float, str, list, tuple and dict are sent as
their base type (IntEnum, namedtuple, OrderedDict, ...); other types raise
TypeError.  This side is trusted, so what msgpack packs by itself in strict
mode (memoryview, msgpack.ExtType, msgpack.Timestamp) also passes through.

Depth: no object may lie deeper than MAX_DEPTH = 512 levels, the top-level
value being level 1, as msgpack-python's packer counts them.  msgpack's own
limits (1025 levels for its packer in msgpack 1.2, 1024 nested containers for
its C unpacker, and none across ext payloads, which are separate msgpack
calls) are brought down to the agent's, so that both directions agree.

Size: unpackb refuses more than max_size bytes (MAX_SIZE by default) and pins
msgpack's max_str_len/max_bin_len/max_array_len/max_map_len/max_ext_len to
what the input can hold.  max_buffer_size is a streaming Unpacker setting and
does not apply here: framing, and so buffering, belongs to the connection.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Final

import msgpack
from msgpack.exceptions import ExtraData, StackError, UnpackException

__all__ = ['MAX_DEPTH', 'MAX_SIZE', 'CodecError', 'packb', 'unpackb']

MAX_DEPTH: Final = 512
#: Default cap on one encoded message; the default of msgpack's own streaming
#: Unpacker (max_buffer_size).
MAX_SIZE: Final = 100 * 1024 * 1024
_MAX_HEX_DIGITS: Final = 100_000
_HEX: Final = re.compile(rb'-?[0-9a-f]+')
_INT_MIN: Final = -(2 ** 63)
_INT_MAX: Final = 2 ** 64 - 1


class CodecError(ValueError):
    """Bytes that are not a well-formed message of the closed type table."""


def _type_error(obj: object) -> TypeError:
    try:
        text = repr(obj)
    except Exception:
        text = '<unrepresentable>'
    if len(text) > 80:
        text = text[:77] + '...'
    return TypeError(f'cannot encode value of type {type(obj).__name__!r}: {text}')


def _too_deep_message(limit: int = MAX_DEPTH) -> str:
    return f'data nested deeper than {limit} levels'


# Every container has one header byte among these; counting them in the
# message bounds the number of containers, hence the depth, in one C pass.
_NOT_HEADERS: Final = bytes(
    b for b in range(256)
    if not (0x80 <= b <= 0x9f or b in b'\xc7\xc8\xc9\xd4\xd5\xd6\xd7\xd8\xdc\xdd\xde\xdf'))


def _may_nest_deeper(data: bytes, limit: int) -> bool:
    """False if data certainly holds no object deeper than limit levels."""
    return (len(data) > limit
            and len(data.translate(None, _NOT_HEADERS)) >= limit)


# ---------------------------------------------------------------- encoding

#: Ext nesting handled by msgpack calls nested in default/ext_hook.  Deeper
#: nesting takes an iterative path: on decoding, each nested msgpack call
#: keeps its 1024-entry parse stack (~41 KiB) on the C stack of the thread
#: or greenlet; on encoding, each costs Python frames.
_INLINE_EXT_LEVELS: Final = 4


class _NeedsRewrite(Exception):
    """Deep ext nesting or a container subclass: take the iterative path."""


def _bigint_ext(value: int) -> msgpack.ExtType:
    return msgpack.ExtType(4, b'%x' % value)


def _as_int(value: int) -> object:
    return value if _INT_MIN <= value <= _INT_MAX else _bigint_ext(value)


# Base-type conversions mirror chopsticks/agent/_codec.py so both sides agree
# byte for byte; join() copies a str subclass without calling an overridden
# __str__ (str-mixin enums).
_BASES: Final[tuple[tuple[type, Callable[[Any], object]], ...]] = (
    (dict, dict), (list, list), (tuple, tuple),
    (str, lambda s: ''.join((s,))), (int, int), (float, float),
)
_SCALAR_BASES: Final = _BASES[3:]
_NATIVE: Final = frozenset({
    type(None), bool, float, str, bytes, bytearray, memoryview,
    msgpack.ExtType, msgpack.Timestamp,
})
_EXT_CODES: Final[dict[type, int]] = {tuple: 1, set: 2, frozenset: 3}
_NESTED: Final = frozenset({list, dict})
_CONTAINERS: Final = frozenset({list, dict, tuple, set, frozenset})


class _PackHook:
    """msgpack's default for one level of ext nesting: the closed ext table."""

    __slots__ = ('level',)

    def __init__(self, level: int) -> None:
        self.level = level

    def __call__(self, obj: Any) -> object:
        if type(obj) is int:
            return _bigint_ext(obj)
        code = _EXT_CODES.get(type(obj))
        if code is not None:
            if self.level >= _INLINE_EXT_LEVELS:
                raise _NeedsRewrite
            payload = _pack_native(list(obj), self.level + 1)
            return msgpack.ExtType(code, payload)
        for base, convert in _SCALAR_BASES:
            if isinstance(obj, base):
                value = convert(obj)
                return _as_int(value) if type(value) is int else value
        raise _NeedsRewrite


# Creating a Packer costs ~0.7 us and packing a small message ~0.1 us, so
# idle ones are kept, one pool per ext level.  list.pop/append are atomic,
# which makes the pools thread-safe; a packer that produced a big message is
# dropped with its buffer.
_idle_packers: Final[list[list[Any]]] = [
    [] for _ in range(_INLINE_EXT_LEVELS + 1)]
_KEEP_PACKER_BELOW: Final = 1 << 20


def _pack_native(obj: object, level: int = 0) -> bytes:
    idle = _idle_packers[level]
    try:
        packer = idle.pop()
    except IndexError:
        packer = msgpack.Packer(use_bin_type=True, strict_types=True,
                                default=_PackHook(level))
    data = b''
    try:
        data = bytes(packer.pack(obj))
    except ValueError as exc:
        if str(exc).startswith('recursion limit'):
            raise ValueError(_too_deep_message()) from None
        raise
    finally:
        if len(data) < _KEEP_PACKER_BELOW:
            idle.append(packer)
    return data


def _reject(obj: object) -> object:
    raise _type_error(obj)


def _plain_packb(obj: object) -> bytes:
    data: bytes = msgpack.packb(
        obj, use_bin_type=True, strict_types=True, default=_reject)
    return data


def _check_depth(root: object) -> None:
    """Raise ValueError if root, made of exact containers, is too deep."""
    level = [root] if type(root) in _CONTAINERS else []
    depth = 1
    while level:
        below: list[Any] = []
        obj: Any
        for obj in level:
            items: Any = [*obj, *obj.values()] if type(obj) is dict else obj
            if items and depth >= MAX_DEPTH:
                raise ValueError(_too_deep_message())
            if not _CONTAINERS.isdisjoint(map(type, items)):
                below.extend([i for i in items if type(i) in _CONTAINERS])
        level = below
        depth += 1


def _rewrite(root: object) -> object:
    """Return root with what msgpack cannot pack replaced by what it can.

    Tuples, sets and frozensets become ExtType 1-3, big ints ExtType 4 and
    subclasses their base type.  Iterative, children before parents, so deep
    tuples cost no recursion; the depth limit is checked exactly on the way.
    """
    done: dict[int, object] = {}  # id(original) -> replacement
    nodes: list[tuple[object, Any]] = []  # (original, exact container)
    stack: list[tuple[object, int]] = [(root, 1)]
    while stack:
        obj, depth = stack.pop()
        value: Any = obj
        if type(value) in _NATIVE:
            continue
        if type(value) not in _CONTAINERS:
            if type(value) is not int:
                for base, convert in _BASES:
                    if isinstance(value, base):
                        value = convert(value)
                        break
                else:
                    raise _type_error(obj)
            if type(value) not in _CONTAINERS:
                if value is not obj or type(value) is int:
                    done[id(obj)] = _as_int(value) if type(value) is int else value
                continue
        if value and depth >= MAX_DEPTH:
            raise ValueError(_too_deep_message())
        nodes.append((obj, value))
        depth += 1
        if type(value) is dict:
            stack.extend([(k, depth) for k in value])
            stack.extend([(v, depth) for v in value.values()])
        else:
            stack.extend([(item, depth) for item in value])
    get = done.get
    for obj, value in reversed(nodes):
        if type(value) is dict:
            done[id(obj)] = {get(id(k), k): get(id(v), v)
                             for k, v in value.items()}
        elif type(value) is list:
            done[id(obj)] = [get(id(i), i) for i in value]
        else:
            payload = _plain_packb([get(id(i), i) for i in value])
            done[id(obj)] = msgpack.ExtType(_EXT_CODES[type(value)], payload)
    return get(id(root), root)


def packb(obj: object) -> bytes:
    """Encode obj with the closed type table (see the module docstring).

    Raises TypeError for a type outside the table and ValueError for data
    nested deeper than MAX_DEPTH.  The agent decodes the result with
    chopsticks/agent/_codec.py.
    """
    try:
        data = _pack_native(obj)
    except _NeedsRewrite:
        return _plain_packb(_rewrite(obj))
    # msgpack checks depth per nested call only; when the message could be
    # too deep, check the whole of it.
    if _may_nest_deeper(data, MAX_DEPTH):
        _check_depth(obj)
    return data


# ---------------------------------------------------------------- decoding

class _TooNested(Exception):
    """Exts nest deeper than _INLINE_EXT_LEVELS: decode again, deferred."""


class _Pending:
    """A tuple/set/frozenset ext whose payload is decoded after msgpack returns."""

    __slots__ = ('code', 'payload', 'items', 'value')

    def __init__(self, code: int, payload: bytes) -> None:
        self.code = code
        self.payload = payload
        self.items: list[Any] = []
        self.value: Any = None


_EXT_TYPES: Final[dict[int, Callable[[list[Any]], object]]] = {
    1: tuple, 2: set, 3: frozenset}
_WALKED: Final = frozenset({
    list, dict, tuple, set, frozenset, _Pending, msgpack.Timestamp})


def _decode_bigint(payload: bytes) -> int:
    if len(payload) > _MAX_HEX_DIGITS + 1 or not _HEX.fullmatch(payload):
        raise CodecError(f'invalid big int payload {payload[:40]!r}')
    return int(payload, 16)


class _ExtHook:
    """The ext_hook of one unpackb call: the closed ext table and nothing else."""

    __slots__ = ('defer', 'level', 'pending')

    def __init__(self, defer: bool) -> None:
        self.defer = defer
        self.level = 0
        self.pending = 0

    def __call__(self, code: int, payload: bytes) -> object:
        if code == 4:
            return _decode_bigint(payload)
        if code not in _EXT_TYPES:
            raise CodecError(f'unsupported ext type {code}')
        if self.defer:
            self.pending += 1
            return _Pending(code, payload)
        if self.level >= _INLINE_EXT_LEVELS:
            raise _TooNested
        self.level += 1
        try:
            items = _unpack_layer(payload, self)
        finally:
            self.level -= 1
        if type(items) is not list:
            raise CodecError(f'ext {code} payload is not an array')
        return _EXT_TYPES[code](items)


def _unpack_layer(data: bytes, hook: _ExtHook) -> Any:
    # max_*_len default to len(data) only since msgpack 1.0; pinned here so
    # that no header makes msgpack allocate more than the input justifies.
    n = len(data)
    return msgpack.unpackb(
        data, raw=False, strict_map_key=False, use_list=True, timestamp=0,
        ext_hook=hook, max_str_len=n, max_bin_len=n, max_array_len=n,
        max_map_len=n // 2, max_ext_len=n)


def _walk(root: Any, max_depth: int, hook: _ExtHook) -> Any:
    """Check depth, reject timestamps and build deferred exts; return root.

    Breadth first, so an ext is met before the exts inside it; those are then
    built in reverse order, inner ones first, and put in place of their
    _Pending in the lists and dicts that hold them.
    """
    exts: list[_Pending] = []
    holders: list[Any] = []  # lists and dicts that directly hold a _Pending
    level = [root] if type(root) in _WALKED else []
    depth = 1
    while level:
        below: list[Any] = []
        for obj in level:
            items: Any
            if type(obj) is dict:
                items = [*obj, *obj.values()]
            elif type(obj) is _Pending:
                items = _unpack_layer(obj.payload, hook)
                if type(items) is not list:
                    raise CodecError(f'ext {obj.code} payload is not an array')
                obj.items = items
                exts.append(obj)
            elif type(obj) is msgpack.Timestamp:
                raise CodecError('unsupported ext type -1 (timestamp)')
            else:
                items = obj
            if items and depth >= max_depth:
                raise CodecError(_too_deep_message(max_depth))
            if not _WALKED.isdisjoint(map(type, items)):
                found = [i for i in items if type(i) in _WALKED]
                below.extend(found)
                if hook.pending and type(obj) in _NESTED and any(
                        type(i) is _Pending for i in found):
                    holders.append(obj)
        level = below
        depth += 1
    for ext in reversed(exts):
        ext.value = _EXT_TYPES[ext.code](
            [i.value if type(i) is _Pending else i for i in ext.items])
    for holder in holders:
        if type(holder) is list:
            holder[:] = [i.value if type(i) is _Pending else i for i in holder]
        else:
            pairs = [(k.value if type(k) is _Pending else k,
                      v.value if type(v) is _Pending else v)
                     for k, v in holder.items()]
            holder.clear()
            holder.update(pairs)
    return root.value if type(root) is _Pending else root


def _describe(exc: BaseException) -> str:
    if isinstance(exc, StackError):
        return 'nested deeper than msgpack allows'
    if isinstance(exc, ExtraData):
        return 'extra bytes after the message'
    return f'{type(exc).__name__}: {exc}' if str(exc) else type(exc).__name__


def unpackb(data: bytes | bytearray | memoryview, *,
            max_depth: int = MAX_DEPTH, max_size: int = MAX_SIZE) -> Any:
    """Decode one message of the closed type table that fills data exactly.

    Raises CodecError, and nothing else, for anything that is not such a
    message, for more than max_size bytes or for nesting deeper than
    max_depth levels.
    """
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    elif not isinstance(data, bytes):
        raise CodecError(f'expected bytes, got {type(data).__name__}')
    if len(data) > max_size:
        raise CodecError(
            f'message of {len(data)} bytes exceeds the limit of {max_size}')
    hook = _ExtHook(defer=False)
    try:
        try:
            obj = _unpack_layer(data, hook)
        except _TooNested:
            hook = _ExtHook(defer=True)
            obj = _unpack_layer(data, hook)
        # 0xff is the timestamp ext code, which msgpack decodes without
        # asking ext_hook; most messages skip the walk.
        if (hook.pending or b'\xff' in data
                or _may_nest_deeper(data, max_depth)):
            obj = _walk(obj, max_depth, hook)
    except CodecError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError,
            UnpackException) as exc:
        raise CodecError(f'undecodable message: {_describe(exc)}') from exc
    return obj
