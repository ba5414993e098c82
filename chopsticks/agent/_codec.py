"""Agent-side wire codec: a pure-Python msgpack subset.

Shipped as source to the remote interpreter, so: stdlib only, syntax common to
Python 2.7 and 3.6+, and private names prefixed ``_mp_`` so that the module
can share a namespace with the other agent modules.  It tests the Python
version itself rather than through the agent's compat module, so that it
stays self-contained and can be tested alone under any interpreter.

``packb`` emits exactly the bytes that ``chopsticks._codec.packb`` (real
msgpack) emits for the same value; ``unpackb`` reads everything that produces.
The type table is closed and shared with ``chopsticks._codec``:

    None, bool, float       nil, true/false, float 64
    int                     smallest msgpack int format; outside
                            [-2**63, 2**64 - 1]: ext 4, ASCII lowercase hex
    text                    str     (Python 2: unicode)
    bytes, bytearray        bin     -> bytes
    list, dict              array, map
    tuple, set, frozenset   ext 1, 2, 3; payload = the items packed as an array

Python 2 only: a native ``str`` is sent as msgpack str (text on the
controller) when it is pure ASCII, and as bin otherwise.  Python 2 code uses
``str`` for text, so ``'ok'`` should arrive as ``'ok'``, not ``b'ok'``.  On
Python 2, ``unpackb`` turns str into ``unicode`` and bin into ``str``.

Subclasses of int, float, str (and Python 2 str), list, tuple and dict are
sent as their base type (IntEnum, namedtuple, OrderedDict, ...); any other
type raises TypeError.  No object may lie deeper than 512 levels, counting the
top-level value as level 1 (msgpack-python's own rule): ValueError.
"""
import struct
import sys

_mp_PY2 = sys.version_info[0] == 2
_mp_text = type(u'')
_MP_MAX_DEPTH = 512

_mp_BYTE = list(map(struct.Struct('>B').pack, range(256)))
_mp_BB = struct.Struct('>BB').pack
_mp_BH = struct.Struct('>BH').pack
_mp_BI = struct.Struct('>BI').pack
_mp_BQ = struct.Struct('>BQ').pack
_mp_Bb = struct.Struct('>Bb').pack
_mp_Bh = struct.Struct('>Bh').pack
_mp_Bi = struct.Struct('>Bi').pack
_mp_Bq = struct.Struct('>Bq').pack
_mp_Bd = struct.Struct('>Bd').pack
_mp_BBB = struct.Struct('>BBB').pack
_mp_BHB = struct.Struct('>BHB').pack
_mp_BIB = struct.Struct('>BIB').pack
_mp_CONST = {None: b'\xc0', False: b'\xc2', True: b'\xc3'}
_mp_FIXEXT = {1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8}
_mp_SEQ_EXT = {list: 0, tuple: 1, set: 2, frozenset: 3}
_mp_SEQ_TYPES = (list, tuple, set, frozenset)
_mp_items = getattr(dict, 'iteritems', dict.items)


def _mp_type_error(obj):
    try:
        text = repr(obj)
    except Exception:
        text = '<unrepresentable>'
    if len(text) > 80:
        text = text[:77] + '...'
    return TypeError('cannot encode value of type %r: %s'
                     % (type(obj).__name__, text))


def _mp_too_deep():
    return ValueError('data nested deeper than %d levels' % _MP_MAX_DEPTH)


def _mp_pack_const(obj, out, depth):
    out.append(_mp_CONST[obj])


def _mp_pack_int(obj, out, depth):
    if obj >= 0:
        if obj < 0x80:
            out.append(_mp_BYTE[obj])
        elif obj < 0x100:
            out.append(_mp_BB(0xcc, obj))
        elif obj < 0x10000:
            out.append(_mp_BH(0xcd, obj))
        elif obj < 0x100000000:
            out.append(_mp_BI(0xce, obj))
        elif obj < 0x10000000000000000:
            out.append(_mp_BQ(0xcf, obj))
        else:
            _mp_pack_ext(4, ('%x' % obj).encode('ascii'), out)
    elif obj >= -0x20:
        out.append(_mp_BYTE[obj & 0xff])
    elif obj >= -0x80:
        out.append(_mp_Bb(0xd0, obj))
    elif obj >= -0x8000:
        out.append(_mp_Bh(0xd1, obj))
    elif obj >= -0x80000000:
        out.append(_mp_Bi(0xd2, obj))
    elif obj >= -0x8000000000000000:
        out.append(_mp_Bq(0xd3, obj))
    else:
        _mp_pack_ext(4, ('%x' % obj).encode('ascii'), out)


def _mp_pack_float(obj, out, depth):
    out.append(_mp_Bd(0xcb, obj))


def _mp_pack_raw(data, out, is_text):
    n = len(data)
    if is_text and n < 32:
        out.append(_mp_BYTE[0xa0 | n])
    elif n < 0x100:
        out.append(_mp_BB(0xd9 if is_text else 0xc4, n))
    elif n < 0x10000:
        out.append(_mp_BH(0xda if is_text else 0xc5, n))
    elif n < 0x100000000:
        out.append(_mp_BI(0xdb if is_text else 0xc6, n))
    else:
        raise ValueError('string of %d bytes is too large' % n)
    out.append(data)


def _mp_pack_text(obj, out, depth):
    _mp_pack_raw(obj.encode('utf-8'), out, True)


def _mp_pack_bin(obj, out, depth):
    _mp_pack_raw(bytes(obj), out, False)


def _mp_pack_str2(obj, out, depth):
    try:
        obj.decode('ascii')
    except UnicodeDecodeError:
        _mp_pack_raw(obj, out, False)
    else:
        _mp_pack_raw(obj, out, True)


def _mp_pack_ext(code, payload, out):
    n = len(payload)
    if n in _mp_FIXEXT:
        out.append(_mp_BB(_mp_FIXEXT[n], code))
    elif n < 0x100:
        out.append(_mp_BBB(0xc7, n, code))
    elif n < 0x10000:
        out.append(_mp_BHB(0xc8, n, code))
    else:
        out.append(_mp_BIB(0xc9, n, code))
    out.append(payload)


# Containers loop over their items here rather than through a helper, so each
# nesting level costs one Python frame: 512 levels stay under the default
# recursion limit of 1000.
def _mp_pack_seq(obj, out, depth):
    code = _mp_SEQ_EXT[type(obj)]
    dst = [] if code else out
    n = len(obj)
    if n < 16:
        dst.append(_mp_BYTE[0x90 | n])
    elif n < 0x10000:
        dst.append(_mp_BH(0xdc, n))
    else:
        dst.append(_mp_BI(0xdd, n))
    if n:
        if depth >= _MP_MAX_DEPTH:
            raise _mp_too_deep()
        depth += 1
        enc = _mp_ENC
        byte = _mp_BYTE
        for item in obj:
            if type(item) is int and 0 <= item < 0x80:
                dst.append(byte[item])
            else:
                (enc.get(type(item)) or _mp_pack_other)(item, dst, depth)
    if code:
        _mp_pack_ext(code, b''.join(dst), out)


def _mp_pack_map(obj, out, depth):
    n = len(obj)
    if n < 16:
        out.append(_mp_BYTE[0x80 | n])
    elif n < 0x10000:
        out.append(_mp_BH(0xde, n))
    else:
        out.append(_mp_BI(0xdf, n))
    if n:
        if depth >= _MP_MAX_DEPTH:
            raise _mp_too_deep()
        depth += 1
        enc = _mp_ENC
        for key, value in _mp_items(obj):
            (enc.get(type(key)) or _mp_pack_other)(key, out, depth)
            (enc.get(type(value)) or _mp_pack_other)(value, out, depth)


def _mp_pack_other(obj, out, depth):
    """Encode a subclass of a supported type as that type, or raise TypeError."""
    for base, convert in _mp_BASES:
        if isinstance(obj, base):
            obj = convert(obj)
            break
    else:
        raise _mp_type_error(obj)
    _mp_ENC[type(obj)](obj, out, depth)


_mp_ENC = {
    type(None): _mp_pack_const, bool: _mp_pack_const,
    int: _mp_pack_int, type(2 ** 64): _mp_pack_int,
    float: _mp_pack_float, _mp_text: _mp_pack_text,
    bytes: _mp_pack_str2 if _mp_PY2 else _mp_pack_bin,
    bytearray: _mp_pack_bin, dict: _mp_pack_map,
    list: _mp_pack_seq, tuple: _mp_pack_seq,
    set: _mp_pack_seq, frozenset: _mp_pack_seq,
}
# Base-type conversions mirror chopsticks._codec so both sides agree byte for
# byte; join() copies a str subclass without calling an overridden __str__.
_mp_BASES = [
    (dict, dict), (list, list), (tuple, tuple),
    (_mp_text, lambda s: u''.join((s,))),
    ((int, type(2 ** 64)), int), (float, float),
]
if _mp_PY2:
    _mp_BASES.append((bytes, lambda s: b''.join((s,))))


def packb(obj):
    """Return the msgpack bytes of obj (see the module docstring for types)."""
    out = []
    (_mp_ENC.get(type(obj)) or _mp_pack_other)(obj, out, 1)
    return b''.join(out)


_mp_SCALAR = dict(
    (_mp_b, struct.Struct('>' + _mp_f)) for _mp_b, _mp_f in
    zip(range(0xca, 0xd4), 'fdBHIQbhiq'))
_mp_LEN = [struct.Struct('>B'), struct.Struct('>H'), struct.Struct('>I')]
# Header byte -> (kind, length struct, fixed length); kinds: 0 str, 1 bin,
# 2 array, 3 map, 4 ext.
_mp_HEAD = {
    0xc4: (1, _mp_LEN[0], 0), 0xc5: (1, _mp_LEN[1], 0),
    0xc6: (1, _mp_LEN[2], 0), 0xc7: (4, _mp_LEN[0], 0),
    0xc8: (4, _mp_LEN[1], 0), 0xc9: (4, _mp_LEN[2], 0),
    0xd4: (4, None, 1), 0xd5: (4, None, 2), 0xd6: (4, None, 4),
    0xd7: (4, None, 8), 0xd8: (4, None, 16),
    0xd9: (0, _mp_LEN[0], 0), 0xda: (0, _mp_LEN[1], 0),
    0xdb: (0, _mp_LEN[2], 0), 0xdc: (2, _mp_LEN[1], 0),
    0xdd: (2, _mp_LEN[2], 0), 0xde: (3, _mp_LEN[1], 0),
    0xdf: (3, _mp_LEN[2], 0),
}


def _mp_bigint(payload):
    digits = payload[1:] if payload[:1] == b'-' else payload
    if not digits or digits.strip(b'0123456789abcdef'):
        raise ValueError('invalid big int payload %r' % (payload[:40],))
    return int(payload, 16)


def _mp_load(data, buf, i, depth):
    """Decode the object at data[i:]; return (object, end offset).

    buf is data itself on Python 3 and a bytearray copy on Python 2, so that
    buf[i] is an int on both.  Running off the end raises IndexError or
    struct.error, which unpackb reports as truncation.
    """
    b = buf[i]
    i += 1
    if b < 0x80:
        return b, i
    if b >= 0xe0:
        return b - 0x100, i
    code = 0
    if b < 0x90:
        kind, n = 3, b & 0x0f
    elif b < 0xa0:
        kind, n = 2, b & 0x0f
    elif b < 0xc0:
        kind, n = 0, b & 0x1f
    else:
        fmt = _mp_SCALAR.get(b)
        if fmt is not None:
            return fmt.unpack_from(data, i)[0], i + fmt.size
        if b == 0xc0:
            return None, i
        if b == 0xc2 or b == 0xc3:
            return b == 0xc3, i
        if b not in _mp_HEAD:
            raise ValueError('invalid msgpack byte 0x%02x at offset %d'
                             % (b, i - 1))
        kind, fmt, n = _mp_HEAD[b]
        if fmt is not None:
            n = fmt.unpack_from(data, i)[0]
            i += fmt.size
    if kind < 2:
        end = i + n
        if end > len(buf):
            raise IndexError(end)
        if kind:
            return data[i:end], end
        return data[i:end].decode('utf-8'), end
    if kind == 4:
        code = buf[i]
        i += 1
        end = i + n
        if end > len(buf):
            raise IndexError(end)
        if code == 4:
            return _mp_bigint(data[i:end]), end
        if code > 3 or not code:
            raise ValueError('unsupported msgpack ext type %d'
                             % (code - 256 if code > 127 else code))
        b = buf[i] if n else 0
        if 0x90 <= b <= 0x9f:
            n = b & 0x0f
            i += 1
        elif b == 0xdc or b == 0xdd:
            fmt = _mp_HEAD[b][1]
            n = fmt.unpack_from(data, i + 1)[0]
            i += 1 + fmt.size
        else:
            raise ValueError('ext %d payload is not an array' % code)
        kind = 2
    # Every item takes at least one byte: refuse absurd counts up front.
    if n > len(buf) - i:
        raise IndexError(n)
    if n and depth >= _MP_MAX_DEPTH:
        raise _mp_too_deep()
    depth += 1
    if kind == 2:
        items = []
        append = items.append
        for _ in range(n):
            if buf[i] < 0x80:
                append(buf[i])
                i += 1
            else:
                item, i = _mp_load(data, buf, i, depth)
                append(item)
        if not code:
            return items, i
        if i != end:
            raise ValueError('ext %d payload has trailing bytes' % code)
        return _mp_SEQ_TYPES[code](items), i
    result = {}
    for _ in range(n):
        key, i = _mp_load(data, buf, i, depth)
        result[key], i = _mp_load(data, buf, i, depth)
    return result, i


def unpackb(data):
    """Decode one msgpack object that fills data exactly; ValueError if bad."""
    if type(data) is not bytes:
        data = bytes(bytearray(data))
    buf = bytearray(data) if _mp_PY2 else data
    try:
        obj, end = _mp_load(data, buf, 0, 1)
    except (IndexError, struct.error):
        raise ValueError('truncated msgpack data')
    except TypeError as exc:
        # An unhashable map key or set item (a list, a dict, a set).
        raise ValueError('invalid msgpack data: %s' % (exc,))
    if end != len(data):
        raise ValueError('%d extra bytes after msgpack data'
                         % (len(data) - end))
    return obj
