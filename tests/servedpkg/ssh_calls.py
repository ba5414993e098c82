"""Functions tests/test_ssh.py runs on SSH agents (any Python; stdlib and servedpkg only).

They live here, not in the test module, because an agent imports a function's
module to unpickle it, and the test module needs pytest and gevent.
"""
import os
import sys


def write_stderr(text):
    sys.stderr.write(text)
    sys.stderr.flush()
    return True


def whoami():
    return os.getuid(), os.getcwd()


def import_served():
    import tests.servedpkg
    return tests.servedpkg.double(21), tests.servedpkg.resource()
