#!/usr/bin/python3
"""A hostile "agent": a real process that speaks the protocol until told to misbehave.

Started as ``hostile_agent.py MODE -E -S -c <stage 1>`` through ``Local(python=...)``
with a wrapper: reads stage 2 and the config frame like a real agent, sends a
valid hello, then answers the first call according to MODE.
"""
import os
import pickle
import re
import struct
import sys

HEADER = struct.Struct('>IIB')
OP_RESULT = 65


def read_exact(n):
    data = b''
    while len(data) < n:
        chunk = os.read(0, n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data


def frame(op, req_id, body):
    return HEADER.pack(len(body), req_id, op) + body


def main():
    mode = sys.argv[1]
    stage1 = sys.argv[-1]
    read_exact(int(re.search(r'f\.read\((\d+)\)', stage1).group(1)))
    size, _, _ = HEADER.unpack(read_exact(HEADER.size))
    read_exact(size)
    # A valid hello: msgpack {'v': 1, 'python': [3, 11, 0], 'pid': 1, 'executable': ''}
    hello = (b'\x84\xa1v\x01\xa6python\x93\x03\x0b\x00\xa3pid\x01'
             b'\xaaexecutable\xa0')
    os.write(1, b'\x00\x00chopsticks-agent\x00\x00' + frame(64, 0, hello))
    size, req_id, op = HEADER.unpack(read_exact(HEADER.size))
    read_exact(size)
    if mode == 'garbage':
        os.write(1, frame(OP_RESULT, req_id, b'\xc1\xc1\xc1 not msgpack'))
    elif mode == 'oversize':
        os.write(1, HEADER.pack(0xFFFFFFF0, req_id, OP_RESULT))
    elif mode == 'pickle':
        # A pickle that would create a file if anyone unpickled it.
        body = pickle.dumps(os.system)
        os.write(1, frame(OP_RESULT, req_id, body))
    elif mode == 'bad-ext':
        os.write(1, frame(OP_RESULT, req_id, b'\xd4\x63\x00'))  # fixext1, code 99
    elif mode == 'deep':
        os.write(1, frame(OP_RESULT, req_id, b'\x91' * 100000 + b'\xc0'))
    elif mode == 'unknown-op':
        os.write(1, frame(200, req_id, b''))
    # Then stay silent until the controller hangs up.
    while os.read(0, 65536):
        pass


if __name__ == '__main__':
    main()
