"""The remote import hook: modules the remote lacks are fetched from the controller.

Appended to ``sys.meta_path``, so the remote's own standard library wins and
only what it cannot find locally is asked for. Python 3 gets the
find_spec/exec_module protocol (``imp`` is gone in 3.12); Python 2 gets
find_module/load_module.
"""
import os
import sys

from chopsticks.agent._compat import PY2, exec_in, imp

if not PY2:
    # The running import system's own class: no importlib import at start-up.
    ModuleSpec = sys.modules['_frozen_importlib'].ModuleSpec

# Prefix for package __path__ entries: no path hook accepts it, so submodules
# of a served package are always served too, even when the same directory
# exists on the remote.
PATH_PREFIX = '<chopsticks>'


class ServedImporter(object):
    """Finder and loader in one: ``ask(name)`` is the round trip to the controller.

    ``ask`` returns None (unknown on the controller) or a dict with ``kind``
    ('source' or 'extension'), ``origin``, ``is_pkg`` and ``source``.
    """

    def __init__(self, host, ask, get_data, may_ask=None):
        self.host = host
        # The reader thread must never wait for an answer only it can read.
        self.may_ask = may_ask or (lambda: True)
        self.ask = ask
        self.get_data_remote = get_data
        self.missing = set()
        self.served = {}
        self._site_dirs = None

    # Python 3 protocol
    def find_spec(self, fullname, path=None, target=None):
        info = self._lookup(fullname)
        if info is None:
            return None
        if info['kind'] != 'source':
            return self._extension(fullname, path, info)
        spec = ModuleSpec(fullname, self, origin=info['origin'],
                          is_package=info['is_pkg'])
        spec.has_location = True
        if info['is_pkg']:
            spec.submodule_search_locations = [PATH_PREFIX + info['pkg_dir']]
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        info = self.served[module.__name__]
        module.__file__ = info['origin']
        module.__loader__ = self
        code = compile(info['source'], info['origin'], 'exec', dont_inherit=True)
        exec_in(code, module.__dict__)

    # Python 2 protocol
    def find_module(self, fullname, path=None):
        # Python 2 asks meta_path before sys.path: let local modules win.
        try:
            found = imp.find_module(fullname.rpartition('.')[2], path)
        except ImportError:
            pass
        else:
            if found[0] is not None:
                found[0].close()
            return None
        info = self._lookup(fullname)
        if info is None:
            return None
        if info['kind'] != 'source':
            self._extension(fullname, path, info)
            return _ExtensionLoader(fullname, extension_dirs(fullname, path, self.site_dirs()))
        return self

    def load_module(self, fullname):
        if fullname in sys.modules:
            return sys.modules[fullname]
        info = self.served[fullname]
        module = imp.new_module(fullname)
        module.__file__ = info['origin']
        module.__loader__ = self
        if info['is_pkg']:
            module.__path__ = [PATH_PREFIX + info['pkg_dir']]
            module.__package__ = fullname
        else:
            module.__package__ = fullname.rpartition('.')[0]
        sys.modules[fullname] = module
        try:
            code = compile(info['source'], info['origin'], 'exec', 0, True)
            exec_in(code, module.__dict__)
        except BaseException:
            sys.modules.pop(fullname, None)
            raise
        return sys.modules[fullname]

    # Loader extras: tracebacks (linecache) and pkgutil.get_data
    def get_source(self, fullname):
        info = self.served.get(fullname)
        if info is None:
            return None
        source = info['source']
        if not isinstance(source, str):
            source = source.decode('utf-8', 'replace')
        return source

    def is_package(self, fullname):
        return self.served[fullname]['is_pkg']

    def get_filename(self, fullname):
        return self.served[fullname]['origin']

    def get_data(self, path):
        data = self.get_data_remote(path)
        if data is None:
            raise IOError('%s: no such resource on the controller: %r'
                          % (self.host, path))
        return data

    def _lookup(self, fullname):
        if fullname in self.missing:
            return None
        if fullname in self.served:
            return self.served[fullname]
        if not self.may_ask():
            return None
        info = self.ask(fullname)
        if info is None:
            self.missing.add(fullname)
            return None
        self.served[fullname] = info
        return info

    def _extension(self, fullname, path, info):
        """A C extension on the controller: use the remote's copy or fail clearly."""
        found = self._local_extension(fullname, path)
        if found is not None:
            return found
        raise ImportError(
            'module %r is a C extension on the controller (%s) and is not '
            'installed on host %r: chopsticks serves pure-Python modules only'
            % (fullname, info['origin'], self.host))

    def site_dirs(self):
        """The remote's site-packages, found without putting them on sys.path.

        The agent runs with -S. Adding site-packages to sys.path would let the
        remote's installed pure-Python packages shadow the controller's from
        then on; they are searched for extension modules only.
        """
        if self._site_dirs is None:
            saved = list(sys.path)
            dirs = []
            try:
                import site  # Python 2 runs site.main() on import, even under -S
                if hasattr(site, 'getsitepackages'):
                    dirs.extend(site.getsitepackages())
                if hasattr(site, 'getusersitepackages'):
                    dirs.append(site.getusersitepackages())
            except Exception:
                pass
            finally:
                sys.path[:] = saved
            self._site_dirs = [d for d in dirs if os.path.isdir(d)]
        return self._site_dirs

    def _local_extension(self, fullname, path):
        """Find the remote's own copy of an extension module, or None.

        A served package's __path__ points at the controller; the remote's
        copy of the same package may live where the controller's does, or in
        one of the remote's sys.path entries.
        """
        name = fullname.rpartition('.')[2]
        dirs = extension_dirs(fullname, path, self.site_dirs())
        if PY2:
            try:
                imp.find_module(name, dirs)
            except ImportError:
                return None
            return True
        import importlib
        from importlib.machinery import PathFinder
        importlib.invalidate_caches()
        return PathFinder.find_spec(fullname, dirs)


def extension_dirs(fullname, path, site_dirs):
    """Where the remote's own copy of extension ``fullname`` may be."""
    parent = fullname.rpartition('.')[0]
    dirs = [p[len(PATH_PREFIX):] if p.startswith(PATH_PREFIX) else p for p in path or ()]
    roots = [entry for entry in sys.path if entry] + list(site_dirs)
    if parent:
        dirs.extend(os.path.join(entry, *parent.split('.')) for entry in roots)
    else:
        dirs.extend(roots)
    return dirs


class _ExtensionLoader(object):
    """Python 2: load the remote's own copy of an extension found off __path__."""

    def __init__(self, fullname, dirs):
        self.fullname = fullname
        self.dirs = dirs

    def load_module(self, fullname):
        if fullname in sys.modules:
            return sys.modules[fullname]
        found = imp.find_module(fullname.rpartition('.')[2], self.dirs)
        try:
            return imp.load_module(fullname, *found)
        finally:
            if found[0] is not None:
                found[0].close()


def install(importer):
    sys.meta_path.append(importer)
