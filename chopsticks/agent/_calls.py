"""Running one call: decode it, rebuild ``__main__`` definitions, run, encode.

A call of a module-level function whose arguments the safe codec carries
comes by reference, in msgpack: no pickle at all. Anything else is
``(fn, args, kwargs)`` pickled. Callables from
importable modules travel by reference and are imported through the import
hook. Functions and classes from the controller's ``__main__`` (and nested
functions, which cannot be pickled by reference) travel as source in
persistent ids, and are rebuilt here:

* ``('mod', name)``: a module, imported here;
* ``('def', kind, name, (source, filename, lineno), module, globals,
  freevars, cells)``: a function or class defined by ``source``, executed in
  the namespace of ``module`` (the agent's stand-in ``__main__`` for the
  controller's ``__main__``), compiled under the controller's file name and
  line numbers so tracebacks show the source lines;
* ``('ref', name)``: a definition already sent in the same pickle.
"""
import sys
import types

from chopsticks.agent._compat import PY2, exec_in, pickle_loads, text_type
from chopsticks.agent._codec import packb, unpackb
from chopsticks.agent._wire import MAX_RESULT

MAIN_NAME = '__chopsticks_main__'


def _main_module():
    module = sys.modules.get(MAIN_NAME)
    if module is None:
        module = types.ModuleType(MAIN_NAME)
        sys.modules[MAIN_NAME] = module
    return module


class _Pending(object):
    """A reference to a definition that is still being rebuilt (a cycle)."""

    def __init__(self, name):
        self.name = name


def _namespace(module_name):
    if module_name == '__main__':
        return _main_module().__dict__
    __import__(module_name)
    return sys.modules[module_name].__dict__


def _remember_lines(filename, lineno, source):
    """Put the sent lines into linecache, so tracebacks can quote them."""
    import linecache
    entry = linecache.cache.get(filename)
    lines = list(entry[2]) if entry and entry[1] is None else []
    new = source.splitlines(True)
    end = lineno - 1 + len(new)
    if len(lines) < end:
        lines.extend(['\n'] * (end - len(lines)))
    lines[lineno - 1:end] = new
    # An mtime of None keeps checkcache() from dropping the entry.
    linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)


def _define(kind, name, where, module_name, global_values, freevars, cells):
    source, filename, lineno = where
    ns = _namespace(module_name)
    for key, value in global_values.items():
        if not isinstance(value, _Pending):
            ns[key] = value
    _remember_lines(filename, lineno, source)
    if not freevars:
        padded = '\n' * (lineno - 1) + source
        exec_in(compile(padded, filename, 'exec', 0, True), ns)
        return ns[name]
    # A closure: rebuild it inside a factory taking its free variables.
    body = ''.join('    ' + line + '\n' for line in source.splitlines())
    factory = 'def __chopsticks_factory__(%s):\n%s    return %s\n' % (
        ', '.join(freevars), body, name)
    padded = '\n' * max(lineno - 2, 0) + factory
    exec_in(compile(padded, filename, 'exec', 0, True), ns)
    try:
        return ns['__chopsticks_factory__'](*cells)
    finally:
        del ns['__chopsticks_factory__']


def persistent_load(pid):
    tag = pid[0]
    if tag == 'mod':
        if pid[1] == '__main__':
            return _main_module()
        __import__(pid[1])
        return sys.modules[pid[1]]
    if tag == 'def':
        return _define(*pid[1:])
    if tag == 'ref':
        module_name, name = pid[1], pid[2]
        return _namespace(module_name).get(name, _Pending(name))
    raise ValueError('unknown persistent id %r' % (tag,))


def short_repr(value, limit=80):
    try:
        text = repr(value)
    except Exception:
        text = '<unrepresentable>'
    if len(text) > limit:
        text = text[:limit - 3] + '...'
    return text


def error_body(kind, exc_type, exc, tb_text):
    return packb({
        'kind': kind,
        'type': text_type(getattr(exc_type, '__name__', str(exc_type))),
        'module': text_type(getattr(exc_type, '__module__', '') or ''),
        'msg': _text(exc),
        'tb': _text(tb_text),
    })


def _text(value):
    if isinstance(value, BaseException):
        try:
            value = text_type(value)
        except Exception:
            value = short_repr(value)
    if not isinstance(value, text_type):
        value = value.decode('utf-8', 'replace')
    return value


def _unpickle_call(body):
    return pickle_loads(body, persistent_load)


def _resolve_call(body):
    """A call by reference: ``[module, qualname, args, kwargs]`` in msgpack."""
    module_name, qualname, args, kwargs = unpackb(body)
    if PY2 and module_name == 'builtins':
        module_name = '__builtin__'
    __import__(module_name)
    fn = sys.modules[module_name]
    for part in qualname.split('.'):
        fn = getattr(fn, part)
    if PY2:
        kwargs = dict((str(k), v) for k, v in kwargs.items())
    return fn, args, kwargs


def run_call(body, by_reference=False):
    """Run one call (pickled, or by reference); return ``(ok, encoded body)``, never raise."""
    try:
        fn, args, kwargs = (_resolve_call if by_reference else _unpickle_call)(body)
        result = fn(*args, **kwargs)
    except BaseException:
        import traceback
        exc_type, exc, tb = sys.exc_info()
        # Skip this frame: the traceback starts where the user's code does.
        if tb.tb_next is not None:
            tb = tb.tb_next
        text = ''.join(traceback.format_exception(exc_type, exc, tb))
        return False, error_body('raised', exc_type, exc, text)
    try:
        data = packb(result)
    except (TypeError, ValueError):
        exc_type, exc, tb = sys.exc_info()
        return False, error_body('encode', exc_type, exc, '')
    if len(data) > MAX_RESULT:
        exc = ValueError('the result is %d bytes encoded; the limit is %d'
                         % (len(data), MAX_RESULT))
        return False, error_body('encode', ValueError, exc, '')
    return True, data
