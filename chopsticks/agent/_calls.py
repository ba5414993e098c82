"""Running one call: unpickle it, rebuild ``__main__`` definitions, run, encode.

The controller sends ``(fn, args, kwargs)`` pickled. Callables from
importable modules travel by reference and are imported through the import
hook. Functions and classes from the controller's ``__main__`` (and nested
functions, which cannot be pickled by reference) travel as source in
persistent ids, and are rebuilt here:

* ``('mod', name)``: a module, imported here;
* ``('def', kind, name, source, module, globals, freevars, cells)``: a function
  or class defined by ``source``, executed in the namespace of ``module``
  (the agent's stand-in ``__main__`` for the controller's ``__main__``);
* ``('ref', name)``: a definition already sent in the same pickle.
"""
import sys
import traceback
import types

from chopsticks.agent._compat import exec_in, pickle_loads, text_type
from chopsticks.agent._codec import packb

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


def _define(kind, name, source, module_name, global_values, freevars, cells):
    ns = _namespace(module_name)
    for key, value in global_values.items():
        if not isinstance(value, _Pending):
            ns[key] = value
    filename = '<%s %s>' % (module_name, name)
    if not freevars:
        exec_in(compile(source, filename, 'exec', 0, True), ns)
        return ns[name]
    # A closure: rebuild it inside a factory taking its free variables.
    body = ''.join('    ' + line + '\n' for line in source.splitlines())
    factory = 'def __chopsticks_factory__(%s):\n%s    return %s\n' % (
        ', '.join(freevars), body, name)
    exec_in(compile(factory, filename, 'exec', 0, True), ns)
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


def run_call(body):
    """Run one pickled call; return ``(ok, encoded body)``, never raise."""
    try:
        fn, args, kwargs = pickle_loads(body, persistent_load)
        result = fn(*args, **kwargs)
    except BaseException:
        exc_type, exc, tb = sys.exc_info()
        # Skip this frame: the traceback starts where the user's code does.
        text = ''.join(traceback.format_exception(exc_type, exc, tb.tb_next or tb))
        return False, error_body('raised', exc_type, exc, text)
    try:
        return True, packb(result)
    except (TypeError, ValueError):
        exc_type, exc, tb = sys.exc_info()
        return False, error_body('encode', exc_type, exc, '')
