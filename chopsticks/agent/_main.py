"""The agent's entry point: take the pipes, say hello, dispatch frames until EOF.

One reader loop (this thread) owns the input pipe; each call runs in a thread
of its own so a slow call never holds up a fast one, and imports are served
while calls run. The reader never imports anything after start-up: on
Python 2 a call thread may hold the global import lock while it waits for the
reader to bring back a module.
"""
import os
import sys

from chopsticks.agent import _wire as wire
from chopsticks.agent._calls import error_body, run_call
from chopsticks.agent._codec import packb, unpackb
from chopsticks.agent._compat import (allocate_lock, get_ident, lock_wait,
                                       start_new_thread, text_type)
from chopsticks.agent._files import Upload, send_file
from chopsticks.agent._importer import ServedImporter, install

IMPORT_TIMEOUT = 300.0
MAX_IDLE_WORKERS = 16


class Workers(object):
    """Threads that run calls: an idle one is reused, else a new one starts.

    Handing a call to a waiting thread costs a lock release; starting a
    thread costs several times that, on every call of a warm fan-out.
    """

    def __init__(self):
        self.idle = []

    def submit(self, fn, args):
        try:
            slot = self.idle.pop()
        except IndexError:
            start_new_thread(self.work, (fn, args))
            return
        slot[1] = (fn, args)
        slot[0].release()

    def work(self, fn, args):
        slot = [allocate_lock(), None]
        slot[0].acquire()
        while True:
            try:
                fn(*args)
            except BaseException:
                pass
            if len(self.idle) >= MAX_IDLE_WORKERS:
                return
            self.idle.append(slot)
            slot[0].acquire()
            fn, args = slot[1]


class Agent(object):
    def __init__(self, read, wfd, host):
        self.read = read
        self.writer = wire.FrameWriter(wfd, allocate_lock())
        self.host = host
        self.waiting = {}
        self.next_id = 0
        self.id_lock = allocate_lock()
        self.uploads = {}
        self.workers = Workers()
        self.handlers = {
            wire.OP_CALL: self.on_call,
            wire.OP_CALL_REF: self.on_call_ref,
            wire.OP_IMPORT_REPLY: self.on_reply,
            wire.OP_DATA_REPLY: self.on_reply,
            wire.OP_PUT_BEGIN: self.on_put_begin,
            wire.OP_PUT_DATA: self.on_put_data,
            wire.OP_PUT_END: self.on_put_end,
            wire.OP_FETCH: self.on_fetch,
        }
        reader = get_ident()
        install(ServedImporter(host, self.ask_import, self.ask_data,
                               lambda: get_ident() != reader))

    def send(self, op, req_id, body):
        self.writer.send(op, req_id, body)

    def rpc(self, op, value):
        """Ask the controller something from a call thread; wait for the answer."""
        lock = allocate_lock()
        lock.acquire()
        slot = [lock, None]
        self.id_lock.acquire()
        try:
            self.next_id += 1
            req_id = self.next_id
        finally:
            self.id_lock.release()
        self.waiting[req_id] = slot
        self.send(op, req_id, packb(value))
        if not lock_wait(lock, IMPORT_TIMEOUT):
            self.waiting.pop(req_id, None)
            raise ImportError('%s: the controller did not answer within %ds'
                              % (self.host, IMPORT_TIMEOUT))
        return unpackb(slot[1])

    def ask_import(self, fullname):
        return self.rpc(wire.OP_IMPORT, text_type(fullname))

    def ask_data(self, path):
        return self.rpc(wire.OP_GET_DATA, text_type(path))

    def on_reply(self, req_id, body):
        slot = self.waiting.pop(req_id, None)
        if slot is not None:
            slot[1] = body
            slot[0].release()

    def on_call(self, req_id, body):
        self.workers.submit(self.call_thread, (req_id, body))

    def on_call_ref(self, req_id, body):
        self.workers.submit(self.call_thread, (req_id, body, True))

    def call_thread(self, req_id, body, by_reference=False):
        ok, data = run_call(body, by_reference)
        self.send(wire.OP_RESULT if ok else wire.OP_ERROR, req_id, data)

    def send_error(self, req_id, kind):
        exc_type, exc = sys.exc_info()[:2]
        self.send(wire.OP_ERROR, req_id, error_body(kind, exc_type, exc, ''))

    def on_put_begin(self, req_id, body):
        args = unpackb(body)
        try:
            self.uploads[req_id] = Upload(args['path'], args['mode'])
        except Exception:
            self.send_error(req_id, 'file')

    def on_put_data(self, req_id, body):
        upload = self.uploads.get(req_id)
        if upload is None:
            return
        try:
            upload.write(body)
        except Exception:
            del self.uploads[req_id]
            upload.abort()
            self.send_error(req_id, 'file')

    def on_put_end(self, req_id, body):
        upload = self.uploads.pop(req_id, None)
        if upload is None:
            return
        try:
            summary = upload.finish(unpackb(body)['sha1'])
        except Exception:
            upload.abort()
            self.send_error(req_id, 'file')
        else:
            self.send(wire.OP_RESULT, req_id, packb(summary))

    def on_fetch(self, req_id, body):
        path = unpackb(body)['path']
        self.workers.submit(self.fetch_thread, (req_id, path))

    def fetch_thread(self, req_id, path):
        def send_chunk(chunk):
            self.send(wire.OP_FETCH_DATA, req_id, chunk)
        try:
            summary = send_file(path, send_chunk)
        except Exception:
            self.send_error(req_id, 'file')
        else:
            self.send(wire.OP_FETCH_END, req_id, packb(summary))

    def serve(self):
        hello = {'v': wire.PROTOCOL_VERSION, 'pid': os.getpid(),
                 'python': list(sys.version_info[:3]),
                 'executable': text_type(sys.executable or '')}
        os.write(self.writer.fd, wire.SYNC)
        self.send(wire.OP_HELLO, 0, packb(hello))
        read_exact = wire.read_exact
        header = wire.HEADER
        handlers = self.handlers
        while True:
            head = read_exact(self.read, wire.HEADER_SIZE)
            if head is None:
                break
            size, req_id, op = header.unpack(head)
            if size > wire.MAX_FRAME:
                break
            body = read_exact(self.read, size) if size else b''
            if body is None:
                break
            handler = handlers.get(op)
            if handler is not None:
                handler(req_id, body)


def read_config(read):
    """The first frame after stage 2: what this agent needs to know of itself."""
    head = wire.read_exact(read, wire.HEADER_SIZE)
    if head is None:
        os._exit(0)
    size, _, op = wire.HEADER.unpack(head)
    if op != wire.OP_CONFIG or size > 65536:
        sys.stderr.write('chopsticks agent: bad configuration frame\n')
        os._exit(2)
    return unpackb(wire.read_exact(read, size))


def main(stdin):
    """Run the agent; never returns.

    ``stdin`` is stage 1's buffered reader on a copy of fd 0: it may already
    hold bytes past stage 2, so the agent keeps reading from it.
    """
    read = stdin.read
    config = read_config(read)
    wfd = os.dup(1)
    # Nothing the user's code prints or spawns may reach the protocol pipes.
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    if null > 2:
        os.close(null)
    if sys.path and sys.path[0] in ('', '.'):
        del sys.path[0]
    status = 0
    try:
        Agent(read, wfd, config['host']).serve()
    except BaseException:
        import traceback
        traceback.print_exc()
        status = 1
    try:
        sys.stderr.flush()
    finally:
        os._exit(status)
