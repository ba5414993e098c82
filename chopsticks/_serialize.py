"""Pickling a call for the agent, including functions that cannot travel by reference.

Functions and classes of importable modules are pickled by reference: the
agent imports their module through the import hook. What pickle cannot send
by reference is sent as source in a persistent id (see
:mod:`chopsticks.agent._calls` for the forms):

* functions and classes defined in ``__main__`` (a script, a notebook cell),
  with the globals they name: modules by name, other ``__main__`` definitions
  as source, plain values pickled by value;
* nested functions (closures) of any module, with their free variables
  captured by value.

Names are found from ``co_names`` of the code and every nested code object,
not by scanning bytecode, so this keeps working as CPython's opcodes change.
Lambdas have no source of their own and are refused with a clear error.
"""
from __future__ import annotations

import inspect
import io
import pickle
import sys
import textwrap
import types
from typing import Any

from . import _codec
from .errors import SerializationError


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _class_names(cls: type) -> set[str]:
    names: set[str] = set()
    for value in vars(cls).values():
        func = getattr(value, '__func__', value)
        code = getattr(func, '__code__', None)
        if isinstance(code, types.CodeType):
            names |= _code_names(code)
    names.update(b.__name__ for b in cls.__bases__)
    return names


def _source(obj: Any) -> tuple[str, str, int]:
    """``(source, filename, first line)``, decorators dropped (the object is decorated).

    A function's source is found from its code object, not the function:
    ``inspect`` follows ``__wrapped__``, which would send a ``functools.wraps``
    wrapper's wrapped function instead of the wrapper.
    """
    target = obj.__code__ if isinstance(obj, types.FunctionType) else obj
    try:
        lines, lineno = inspect.getsourcelines(target)
        filename = inspect.getsourcefile(target) or inspect.getfile(target)
    except (OSError, TypeError) as exc:
        raise SerializationError(
            f'cannot send {obj.__module__}.{obj.__qualname__}: its source is not '
            f'available ({exc}); define it in a file or an importable module') from None
    lines = textwrap.dedent(''.join(lines)).splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.startswith(('def ', 'async def ', 'class ')):
            return ''.join(lines[index:]), filename, lineno + index
    return ''.join(lines), filename, lineno


def _needs_source(obj: Any) -> bool:
    module = getattr(obj, '__module__', None)
    if module == '__main__':
        return True
    return '<locals>' in getattr(obj, '__qualname__', '')


class CallPickler(pickle.Pickler):
    """A pickler that sends ``__main__`` and nested definitions as source."""

    def __init__(self, file: io.BytesIO, protocol: int) -> None:
        super().__init__(file, protocol)
        self._protocol = protocol
        self._sent: set[int] = set()

    def persistent_id(self, obj: Any) -> Any:  # noqa: C901 - one dispatch
        if isinstance(obj, types.ModuleType):
            return ('mod', obj.__name__)
        if isinstance(obj, types.FunctionType) and _needs_source(obj):
            return self._function(obj)
        if isinstance(obj, type) and _needs_source(obj):
            return self._class(obj)
        return None

    def _function(self, fn: types.FunctionType) -> tuple[Any, ...]:
        # The code's own name: functools.wraps renames the function object.
        name = fn.__code__.co_name
        if name == '<lambda>':
            raise SerializationError(
                f'cannot send lambda {fn.__qualname__} from {fn.__module__}: '
                'lambdas have no source of their own; use def')
        if id(fn) in self._sent and fn.__module__ == '__main__' and not fn.__code__.co_freevars:
            return ('ref', fn.__module__, name)
        self._sent.add(id(fn))
        names = _code_names(fn.__code__)
        cells = tuple(self._cell(fn, c) for c in fn.__closure__ or ())
        return ('def', 'function', name, _source(fn), fn.__module__,
                self._globals(fn.__globals__, names, fn.__module__),
                fn.__code__.co_freevars, cells)

    def _class(self, cls: type) -> tuple[Any, ...]:
        if id(cls) in self._sent:
            return ('ref', cls.__module__, cls.__name__)
        self._sent.add(id(cls))
        module = inspect.getmodule(cls)
        namespace = vars(module) if module is not None else {}
        return ('def', 'class', cls.__name__, _source(cls), cls.__module__,
                self._globals(namespace, _class_names(cls), cls.__module__), (), ())

    @staticmethod
    def _cell(fn: types.FunctionType, cell: Any) -> Any:
        try:
            return cell.cell_contents
        except ValueError:
            raise SerializationError(
                f'cannot send {fn.__qualname__}: a free variable is not bound yet') from None

    def _globals(self, namespace: dict[str, Any], names: set[str],
                 module: str) -> dict[str, Any]:
        """The globals a definition names, as far as they can travel.

        Only ``__main__`` definitions need their globals sent: nested functions
        of importable modules find theirs in the module, imported remotely.
        """
        if module != '__main__':
            return {}
        found = {}
        for name in sorted(names):
            if name not in namespace or name.startswith('__'):
                continue
            value = namespace[name]
            if not self._picklable(value):
                # co_names also holds attribute names; an unpicklable global
                # that merely shares a name must not break the call.
                continue
            found[name] = value
        return found

    def _picklable(self, value: Any) -> bool:
        if isinstance(value, (types.ModuleType, types.FunctionType, type)):
            return not (isinstance(value, types.FunctionType)
                        and value.__name__ == '<lambda>')
        try:
            pickle.dumps(value, self._protocol)
        except Exception:
            return False
        return True


def dumps_call(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
               protocol: int) -> bytes:
    """Pickle ``(fn, args, kwargs)`` for an agent reading ``protocol``."""
    if not callable(fn):
        raise SerializationError(f'{fn!r} is not callable')
    buf = io.BytesIO()
    try:
        CallPickler(buf, protocol).dump((fn, args, kwargs))
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(f'cannot send call to {fn!r}: {exc}') from exc
    return buf.getvalue()


def reference_call(fn: Any, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> bytes | None:
    """The call as ``[module, qualname, args, kwargs]`` msgpack, if it can go that way.

    Possible when ``fn`` is a module-level function, builtin or class that the
    agent can import by name, and the safe codec carries every argument
    exactly (``packb`` is strict about types). The agent then needs no pickle:
    less to start, nothing to unpickle.
    """
    if not isinstance(fn, (types.FunctionType, types.BuiltinFunctionType, type)):
        return None
    module = getattr(fn, '__module__', None)
    qualname = getattr(fn, '__qualname__', None)
    if (not module or not qualname or module == '__main__' or '<' in qualname
            or getattr(fn, '__self__', None) not in (None, sys.modules.get(module))):
        return None
    target: Any = sys.modules.get(module)
    for part in qualname.split('.'):
        target = getattr(target, part, None)
    if target is not fn:
        return None
    if not (_plain(args) and _plain(kwargs)):
        return None
    try:
        return _codec.packb([module, qualname, list(args), kwargs])
    except (_codec.CodecError, TypeError, ValueError):
        return None


_SCALARS = (type(None), bool, int, float, str, bytes)
_CONTAINERS = (list, tuple, set, frozenset)


def _plain(value: Any, depth: int = 0) -> bool:
    """True if the codec carries ``value`` with every type exactly kept."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if depth > 32:
        return False
    if kind in _CONTAINERS:
        return all(_plain(item, depth + 1) for item in value)
    if kind is dict:
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    return False


def protocol_for(python: tuple[int, ...]) -> int:
    """The highest pickle protocol an agent on ``python`` reads."""
    if python[0] == 2:
        return 2
    return 4 if python[:2] < (3, 8) else 5
