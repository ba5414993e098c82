"""Framing: the header, the op table, exact reads, locked writes.

The one op table of the protocol: the controller imports these constants
from here too, so the two sides cannot drift apart.
"""
import os
import struct

PROTOCOL_VERSION = 1

# Written before the first frame: the controller skips anything before it
# (a login script that prints on stdout).
SYNC = b'\x00\x00chopsticks-agent\x00\x00'

HEADER = struct.Struct('>IIB')  # body length, request id, op
HEADER_SIZE = HEADER.size

# Controller -> agent.
OP_CALL = 1
OP_IMPORT_REPLY = 2
OP_PUT_BEGIN = 3
OP_PUT_DATA = 4
OP_PUT_END = 5
OP_FETCH = 6
OP_DATA_REPLY = 7
OP_CONFIG = 8
OP_CALL_REF = 9
# Agent -> controller.
OP_HELLO = 64
OP_RESULT = 65
OP_ERROR = 66
OP_IMPORT = 67
OP_FETCH_DATA = 68
OP_FETCH_END = 69
OP_GET_DATA = 70

# The agent refuses frames over this size from the controller.
MAX_FRAME = 1 << 30
# A result larger than this (encoded) is an error of that call, not a frame
# the controller would refuse (its limit is larger).
MAX_RESULT = 100 << 20


def read_exact(read, size):
    """Read exactly ``size`` bytes with ``read``; return None at end of file."""
    chunks = []
    while size:
        chunk = read(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b''.join(chunks)


class FrameWriter(object):
    """Writes whole frames to one fd; a lock keeps frames from interleaving."""

    def __init__(self, fd, lock):
        self.fd = fd
        self.lock = lock

    def send(self, op, req_id, body):
        data = HEADER.pack(len(body), req_id, op) + body
        self.lock.acquire()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        finally:
            self.lock.release()
