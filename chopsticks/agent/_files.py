"""put and fetch on the remote: streamed in chunks, checksummed, atomic.

hashlib and tempfile are imported on first use: most agents never move a file.
"""
import os

from chopsticks.agent._compat import text_type

CHUNK = 256 * 1024


class Upload(object):
    """One put in progress: a temporary file beside the target, renamed at the end."""

    def __init__(self, path, mode):
        import hashlib
        import tempfile
        if path is None:
            # No path given: a fresh temporary file, reported back.
            fd, path = tempfile.mkstemp(prefix='chopsticks-put-')
            os.close(fd)
        path = os.path.abspath(os.path.expanduser(path))
        if os.path.isdir(path):
            raise IOError('remote path %r is a directory' % path)
        self.path = path
        self.mode = mode
        self.sha1 = hashlib.sha1()
        self.size = 0
        directory, name = os.path.split(path)
        fd, self.tmp = tempfile.mkstemp(prefix='.%s.' % name, suffix='.part',
                                        dir=directory)
        self.file = os.fdopen(fd, 'wb')

    def write(self, data):
        self.file.write(data)
        self.sha1.update(data)
        self.size += len(data)

    def finish(self, expected_sha1):
        self.file.close()
        digest = self.sha1.hexdigest()
        if digest != expected_sha1:
            self.abort()
            raise IOError('checksum mismatch writing %r: got %s, expected %s'
                          % (self.path, digest, expected_sha1))
        os.chmod(self.tmp, self.mode)
        os.rename(self.tmp, self.path)
        return {'remote_path': text_type(self.path), 'sha1sum': text_type(digest),
                'size': self.size}

    def abort(self):
        try:
            self.file.close()
        finally:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass


def send_file(path, send_chunk):
    """Stream ``path`` through ``send_chunk``; return the fetch summary."""
    import hashlib
    path = os.path.abspath(os.path.expanduser(path))
    sha1 = hashlib.sha1()
    size = 0
    f = open(path, 'rb')
    try:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            sha1.update(chunk)
            size += len(chunk)
            send_chunk(chunk)
    finally:
        f.close()
    return {'remote_path': text_type(path), 'sha1sum': text_type(sha1.hexdigest()),
            'size': size}
