"""The import server: module source for agents, from one process-wide LRU cache.

Agents ask for modules by name. The server finds them on the controller
without importing anything (an agent's request must not run controller
code), reads each file once per process however many tunnels ask, and
re-reads it only when its mtime or size changes. The cache is bounded in
bytes. Only pure-Python modules are served; C extensions are answered with
``kind='extension'`` so the agent can try its own copy.

``get_data`` serves resource files (``pkgutil.get_data``) only from inside
the directory of a regular package (one with an ``__init__.py``) that was
served to the same tunnel: each connection passes the directories it was
given. Namespace packages are served (empty) but grant no resources, so an
agent cannot turn an arbitrary directory on ``sys.path`` into a file server.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
import threading
from collections import Counter, OrderedDict
from typing import Any

SOURCE_SUFFIXES = tuple(importlib.machinery.SOURCE_SUFFIXES)
# On an agent, chopsticks itself is a stand-in: the controller API needs
# gevent and Python 3, so each of its modules is served as placeholders with
# the same public names (a user's module that imports chopsticks.tunnel
# still imports remotely). The stdlib-only modules are served for real.
STUB_PACKAGE = 'chopsticks'
AGENT_SAFE = ('chopsticks.facts', 'chopsticks.agent')
STUB_TEMPLATE = '''"""Stand-in for %(name)s on an agent: the controller API does not run here."""


class _ControllerOnly(object):
    def __init__(self, *args, **kwargs):
        raise RuntimeError("%%s.%%s is part of the chopsticks controller and cannot be "
                           "used on an agent" %% (type(self).__module__, type(self).__name__))


for _name in %(names)r:
    globals()[_name] = type(_name, (_ControllerOnly,), {"__module__": __name__})
# Exceptions stay exceptions: code may raise and catch them on an agent.
for _name in %(exceptions)r:
    globals()[_name] = type(_name, (Exception,), {"__module__": __name__})
'''


def _is_agent_safe(fullname: str) -> bool:
    return any(fullname == safe or fullname.startswith(safe + '.') for safe in AGENT_SAFE)


def _stub_source(fullname: str) -> bytes:
    module = sys.modules.get(fullname)
    if module is None:
        # Our own package: importing it on the controller is safe.
        module = importlib.import_module(fullname)
    public = getattr(module, '__all__', None)
    if public is None:
        public = [n for n, v in vars(module).items()
                  if not n.startswith('_') and not isinstance(v, type(sys))]
    names = [n for n in public if n.isidentifier()]
    exceptions = [n for n in names if isinstance(getattr(module, n, None), type)
                  and issubclass(getattr(module, n), BaseException)]
    others = [n for n in names if n not in exceptions]
    return (STUB_TEMPLATE % {'name': fullname, 'names': sorted(others),
                             'exceptions': sorted(exceptions)}).encode('ascii')
MAX_RESOURCE = 64 * 1024 * 1024


class SourceCache:
    """A bounded LRU of file contents keyed by path, checked against (mtime, size)."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.total = 0
        self.reads = 0  # files actually read from disk
        self.read_counts: Counter[str] = Counter()  # per path: tests count them
        self._entries: OrderedDict[str, tuple[int, int, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, path: str) -> bytes:
        st = os.stat(path)
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None and entry[:2] == key:
                self._entries.move_to_end(path)
                return entry[2]
        with open(path, 'rb') as f:
            data = f.read()
        with self._lock:
            self.reads += 1
            self.read_counts[path] += 1
            old = self._entries.pop(path, None)
            if old is not None:
                self.total -= len(old[2])
            self._entries[path] = (key[0], key[1], data)
            self.total += len(data)
            while self.total > self.max_bytes and len(self._entries) > 1:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self.total -= len(dropped)
        return data

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.total = 0


class ImportServer:
    """Answers IMPORT and GET_DATA requests from every tunnel's agent."""

    def __init__(self, cache: SourceCache | None = None) -> None:
        self.cache = cache or SourceCache()
        self._stubs: dict[str, bytes] = {}

    def _stub(self, fullname: str) -> bytes:
        stub = self._stubs.get(fullname)
        if stub is None:
            try:
                stub = _stub_source(fullname)
            except Exception:  # noqa: BLE001 - an unimportable module gets no names
                stub = (STUB_TEMPLATE % {'name': fullname, 'names': [],
                                         'exceptions': []}).encode('ascii')
            self._stubs[fullname] = stub
        return stub

    def find(self, fullname: str) -> Any:
        """Locate ``fullname`` without importing it (or its parents)."""
        if not fullname or fullname == '__main__' or fullname.startswith('.'):
            return None
        parent, _, _ = fullname.rpartition('.')
        path = None
        if parent:
            parent_spec = self.find(parent)
            if parent_spec is None or parent_spec.submodule_search_locations is None:
                return None
            path = list(parent_spec.submodule_search_locations)
        module = sys.modules.get(fullname)
        spec = getattr(module, '__spec__', None) if module is not None else None
        if spec is None:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        return spec

    def lookup(self, fullname: str) -> dict[str, Any] | None:
        """The IMPORT answer for ``fullname``: None, or what the agent needs to load it."""
        try:
            spec = self.find(fullname)
        except (ImportError, ValueError, OSError):
            return None
        if spec is None:
            return None
        is_pkg = spec.submodule_search_locations is not None
        origin = spec.origin
        if origin in (None, 'namespace') and is_pkg:
            # A namespace package: an empty package whose children are served.
            locations = list(spec.submodule_search_locations)
            pkg_dir = locations[0] if locations else fullname
            return {'kind': 'source', 'origin': os.path.join(pkg_dir, '__init__.py'),
                    'is_pkg': True, 'pkg_dir': pkg_dir, 'source': b'', 'namespace': True}
        if ((fullname == STUB_PACKAGE or fullname.startswith(STUB_PACKAGE + '.'))
                and not _is_agent_safe(fullname) and origin):
            pkg_dir = os.path.dirname(origin) if is_pkg else ''
            return {'kind': 'source', 'origin': origin, 'is_pkg': is_pkg,
                    'pkg_dir': pkg_dir, 'source': self._stub(fullname)}
        if not origin or not os.path.isabs(origin):
            return None  # built-in or frozen: the remote has its own
        if not origin.endswith(SOURCE_SUFFIXES):
            return {'kind': 'extension', 'origin': origin, 'is_pkg': is_pkg}
        try:
            source = self.cache.read(origin)
        except OSError:
            return None
        pkg_dir = os.path.dirname(origin) if is_pkg else ''
        return {'kind': 'source', 'origin': origin, 'is_pkg': is_pkg,
                'pkg_dir': pkg_dir, 'source': source}

    @staticmethod
    def resource_root(answer: dict[str, Any] | None) -> str | None:
        """The directory an IMPORT answer lets its tunnel read resources from."""
        if (answer and answer.get('kind') == 'source' and answer.get('is_pkg')
                and not answer.get('namespace')):
            return os.path.realpath(answer['pkg_dir'])
        return None

    def get_data(self, path: str, roots: set[str]) -> bytes | None:
        """A resource file inside one of ``roots`` (a tunnel's served packages), or None."""
        real = os.path.realpath(path)
        if not any(real.startswith(root + os.sep) for root in roots):
            return None
        try:
            if os.path.getsize(real) > MAX_RESOURCE:
                return None
            return self.cache.read(real)
        except OSError:
            return None


#: The one import server of this process, shared by every tunnel.
SERVER = ImportServer()
