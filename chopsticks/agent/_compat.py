"""Every Python 2 / Python 3 difference the agent needs, in one place."""
import sys

PY2 = sys.version_info[0] == 2

if PY2:
    # Eager on Python 2 only: under its global import lock the reader thread
    # must never import while a call thread waits on it for a served module.
    import hashlib  # noqa: F401
    import imp
    import linecache  # noqa: F401
    import tempfile  # noqa: F401
    import traceback  # noqa: F401
    import cPickle as pickle
    from cStringIO import StringIO as BytesIO
    from thread import allocate_lock, get_ident, start_new_thread
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
    from io import BytesIO
    # _thread, not threading: threading costs a tenth of an agent's start-up.
    from _thread import allocate_lock, get_ident, start_new_thread
    text_type = str
    string_types = (str,)

    def pickle_loads(data, persistent_load):
        # Imported on first use: calls by reference never need pickle, and
        # its import is a quarter of an agent's start-up.
        import pickle
        unpickler = pickle.Unpickler(BytesIO(data))
        unpickler.persistent_load = persistent_load
        return unpickler.load()

    def lock_wait(lock, timeout):
        return lock.acquire(True, timeout)

    def to_text(value):
        if isinstance(value, bytes):
            return value.decode('utf-8', 'replace')
        return value


def exec_in(code, namespace):
    exec(code, namespace)
