"""More functions run on agents by the import tests (any Python)."""


def import_module(name):
    import importlib
    module = importlib.import_module(name)
    return getattr(module, '__file__', None)


def value_of(module_name, attribute):
    import importlib
    return getattr(importlib.import_module(module_name), attribute)


def read_resource(path):
    import sys
    for finder in sys.meta_path:
        if type(finder).__name__ == 'ServedImporter':
            try:
                return finder.get_data(path)
            except IOError as exc:
                return 'refused: %s' % exc
    return None


def use_controller_api():
    from chopsticks.tunnel import Local, RemoteException
    try:
        raise RemoteException('caught like any exception')
    except RemoteException:
        pass
    try:
        Local()
    except RuntimeError as exc:
        return str(exc)
    return 'constructed'


def msgpack_pack(value):
    import msgpack
    return msgpack.packb(value), msgpack.version


def sleep_then(seconds, value):
    import time
    time.sleep(seconds)
    return value


def append_line(path, text):
    with open(path, 'a') as f:
        f.write(text + '\n')
    return text


def agent_pid():
    import os
    return os.getpid()


def is_even_name(name):
    return len(name) % 2 == 0


def die(message):
    import os
    import sys
    sys.stderr.write(message + '\n')
    sys.stderr.flush()
    os._exit(3)
