"""Every Python 2 / Python 3 difference the agent needs, in one place."""
import sys

PY2 = sys.version_info[0] == 2

if PY2:
    import imp
    import cPickle as pickle
    from cStringIO import StringIO as BytesIO
    from thread import allocate_lock
    text_type = unicode  # noqa: F821 - Python 2 only
    string_types = (str, unicode)  # noqa: F821

    def pickle_loads(data, persistent_load):
        unpickler = pickle.Unpickler(BytesIO(data))
        unpickler.persistent_load = persistent_load
        return unpickler.load()

    def lock_wait(lock, timeout):
        # Python 2 lock waits with a timeout poll in 50 ms steps; the agent
        # exits when the controller goes away, so an untimed wait is bounded.
        lock.acquire()
        return True

    def to_text(value):
        if isinstance(value, str):
            return value.decode('utf-8', 'replace')
        return value
else:
    imp = None  # gone in 3.12; Python 3 uses importlib
    import pickle
    from io import BytesIO
    from _thread import allocate_lock
    text_type = str
    string_types = (str,)

    class _Unpickler(pickle.Unpickler):
        def __init__(self, data, persistent_load):
            pickle.Unpickler.__init__(self, BytesIO(data))
            self._pl = persistent_load

        def persistent_load(self, pid):
            return self._pl(pid)

    def pickle_loads(data, persistent_load):
        return _Unpickler(data, persistent_load).load()

    def lock_wait(lock, timeout):
        return lock.acquire(True, timeout)

    def to_text(value):
        if isinstance(value, bytes):
            return value.decode('utf-8', 'replace')
        return value


def exec_in(code, namespace):
    exec(code, namespace)
