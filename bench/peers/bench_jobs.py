"""Functions the benchmark sends to remote hosts (importable, so every tool can ship them).

Stdlib only here; the package imported by :func:`import_heavy` is served
from the controller (bench/.venvs/importpkg, first on the runner's sys.path).
"""
import sys

#: What scenario 3 imports remotely, and the version the result must show.
HEAVY_PACKAGE = 'trio'
HEAVY_VERSION = '0.22.2'


def import_heavy():
    """Import the heavy package; ``'<version> <modules loaded>'``."""
    before = len(sys.modules)
    import trio
    return '%s %d' % (trio.__version__, len(sys.modules) - before)


def write_file(path, data):
    """Write ``data`` to ``path`` (the put equivalent for tools that only call)."""
    import hashlib
    import os
    tmp = path + '.part'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.rename(tmp, path)
    return {'remote_path': path, 'size': len(data), 'sha1sum': hashlib.sha1(data).hexdigest()}


def mitogen_get_file(master, path, dest):
    """mitogen's put: pull ``path`` from the master's FileService into ``dest``."""
    import os
    import mitogen.service
    tmp = dest + '.part'
    with open(tmp, 'wb') as fp:
        ok, meta = mitogen.service.FileService.get(context=master, path=path, out_fp=fp)
    if not ok:
        os.unlink(tmp)
        raise IOError('transfer of %s interrupted' % path)
    os.rename(tmp, dest)
    return {'remote_path': dest, 'size': meta['size']}
