"""The KPU: kmodels loaded the way the firmware loads them, run by nncase's Simulator (V5) or
ncc v0.2's `ncc infer` (V4, the K210 runtime's kernels; `make ncc` installs it).

Loading follows the firmware: read the bytes (a file on the board or `size` bytes of the
flash chip), check the kmodel version against the profile, then take the model plus its
working memory out of the system heap (`utils.heap_free()`); each failure raises the
profile's own exception and text. A V3 model (no host runtime exists), or a V4 model without
ncc, that a profile accepts loads, but running it raises a vboard error saying so.

The runtimes run in a worker process (host/vboard/kpu_worker.py), started on the first
model load and stopped with the board: `Simulator.run` holds the GIL, and in this process it
would stop the virtual UART's receive thread for the whole simulated KPU time, where a K210's
UART interrupt keeps filling the ring while the KPU runs. The board thread waits on a pipe
(GIL released). SIGUSR1 (Ctrl-C, RESET) is held back during a request, so an interrupt lands
when the KPU call returns, as it did with the Simulator in this process; nncase's exceptions
come back with their type and text.
"""
import builtins
import os
import signal
import struct
import subprocess
import sys
import threading

import numpy as np

from host import kmodel
from host.errors import UserError
from host.vboard import fs
from host.vboard import kpu_worker as _wire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_EXCEPTIONS = {"ValueError": ValueError, "OSError": OSError, "MemoryError": MemoryError,
               "RuntimeError": RuntimeError}


def firmware_error(spec):
    exc_type, message = spec
    return _EXCEPTIONS.get(exc_type, OSError)(message)


working_memory = kmodel.working_memory   # one definition, shared with host/flash.py


def read_model(source, size=None):
    """Bytes of a kmodel from a board path or a flash offset (size required from flash)."""
    if isinstance(source, int):
        if size is None:
            raise ValueError("size is required to load a kmodel from flash")
        return fs.read_flash(source, size)
    with fs.open_file(source, "rb") as f:
        return f.read()


class Model:
    def __init__(self, board, data):
        self.board = board
        profile = board.profile
        try:
            self.info = kmodel.parse(data)
        except UserError:
            raise firmware_error(profile.format_error)
        if self.info["version"] not in profile.kmodel_versions:
            raise firmware_error(profile.version_error)
        self.heap = len(data) + working_memory(self.info)
        if self.heap > heap_free(board):
            raise firmware_error(profile.nomem_error)
        self.simulated = self.info["version"] == 5 or (self.info["version"] == 4
                                                       and v4_runtime() is not None)
        self.id = None
        self._data = bytes(data) if self.simulated else None
        self._generation = None
        if self.simulated:
            try:
                ENGINE.load(self)
            except RuntimeError:
                raise firmware_error(profile.format_error)
        board.session.models.append(self)

    def free(self):
        if self in self.board.session.models:
            self.board.session.models.remove(self)
        if self.simulated and self.id is not None:
            ENGINE.free(self)
        self.simulated = False
        self._data = None

    @property
    def input_shape(self):
        return self.info["inputs"][0]["shape"]           # [1, 3, H, W]

    def output_count(self):
        return len(self.info["outputs"])

    def run(self, planar):
        """uint8 planar R,G,B bytes (the image's AI buffer) -> list of flat float32 arrays."""
        if not self.simulated:
            raise OSError("vboard: kmodel V%d cannot run here (V5 runs in nncase 1.9's "
                          "simulator, V4 in ncc v0.2's infer: `make ncc`; V3 has no host "
                          "runtime)" % self.info["version"])
        shape = [int(v) for v in self.input_shape]
        size = shape[0] * shape[1] * shape[2] * shape[3]
        planar = bytes(planar)
        if len(planar) != size:    # what numpy's reshape said when it ran in this process
            raise ValueError("cannot reshape array of size %d into shape %s"
                             % (len(planar), tuple(shape)))
        return ENGINE.run(self, struct.pack("<4I", *shape) + planar)


def v4_runtime():
    """The ncc v0.2 binary that runs V4 kmodels here, or None."""
    from host import ncc
    try:
        return ncc.require_v02(ncc.find_ncc())
    except UserError:
        return None


def heap_free(board):
    return board.profile.heap_bytes - sum(m.heap for m in board.session.models)


def _remote_exception(body):
    """The worker's exception as the same built-in type (RuntimeError for nncase's own)."""
    name, _, message = body.decode("utf-8", "replace").partition("\0")
    cls = getattr(builtins, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = RuntimeError
    try:
        return cls(message)
    except Exception:
        return RuntimeError(message)


class Engine:
    """The worker process that holds the board's Simulators: one per board process, started
    on first use, restarted (models reloaded) if it died, stopped by `shutdown()`."""

    def __init__(self):
        self.proc = None
        self.wfd = self.rfd = None
        self.generation = 0
        self._next_id = 0
        self._lock = threading.Lock()

    def _start(self):
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "host.vboard.kpu_worker", str(to_r), str(from_w)],
                pass_fds=(to_r, from_w), cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL)
        except BaseException:
            for fd in (to_r, to_w, from_r, from_w):
                os.close(fd)
            raise
        os.close(to_r)
        os.close(from_w)
        self.wfd, self.rfd = to_w, from_r
        self.generation += 1

    def stop(self):
        for fd in (self.wfd, self.rfd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.wfd = self.rfd = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def _request(self, op, model_id, payload):
        """One request and its reply; SIGUSR1 held back meanwhile (see the module doc)."""
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        try:
            with self._lock:
                if self.proc is None:
                    self._start()
                try:
                    _wire.write_all(self.wfd, _wire.REQUEST.pack(op, model_id, len(payload)))
                    _wire.write_all(self.wfd, payload)
                    head = _wire.read_exact(self.rfd, _wire.REPLY.size)
                    status, length = _wire.REPLY.unpack(head) if head else (None, 0)
                    body = _wire.read_exact(self.rfd, length) if head else None
                except OSError:
                    body = None
                if body is None:
                    self.stop()
                    raise OSError("vboard: the KPU worker (nncase's Simulator) exited")
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        if status != _wire.OK:
            raise _remote_exception(body)
        return body

    def load(self, model):
        """Load `model` into the worker; the worker drops every model the board no longer
        holds (a soft reset throws a session's models away without freeing them)."""
        alive = [m.id for m in model.board.session.models
                 if m is not model and m.id is not None and m._generation == self.generation]
        self._next_id += 1
        model_id = self._next_id
        self._request(_wire.LOAD, model_id,
                      struct.pack("<I%dI" % len(alive), len(alive), *alive) + model._data)
        model.id, model._generation = model_id, self.generation

    def free(self, model):
        if self.proc is not None and model._generation == self.generation:
            self._request(_wire.FREE, model.id, b"")

    def run(self, model, payload):
        if model._generation != self.generation or self.proc is None:
            self.load(model)             # a new worker: each model reloads on its next run
        body = self._request(_wire.RUN, model.id, payload)
        (count,) = struct.unpack_from("<I", body)
        outs, pos = [], 4
        for _ in range(count):
            (n,) = struct.unpack_from("<I", body, pos)
            outs.append(np.frombuffer(body, np.float32, n, pos + 4).copy())
            pos += 4 + 4 * n
        return outs


ENGINE = Engine()


def shutdown():
    """Stop the KPU worker (the board is going away; it would also exit on its own when its
    request pipe closes)."""
    ENGINE.stop()


def flash_model_size(offset):
    """(size, version) of a V4 or V5 model at a flash offset, given without size (legacy
    kpu.load(address), CanMV feat/kpu load(offset)): the headers tell how far it extends.
    (None, version) otherwise."""
    head = fs.read_flash(offset, 32)
    magic, version, header_size, _flags, _align, modules = struct.unpack_from("<4sIIIII", head)
    if magic != b"LDMK":
        return None, struct.unpack_from("<I", head)[0]
    if version == 4:
        return kmodel.v4_size(lambda o, n: fs.read_flash(offset + o, n)), 4
    if version != 5:
        return None, version
    pos = offset + header_size
    for _ in range(modules):
        size = struct.unpack_from("<I", fs.read_flash(pos + 16 + 8, 4))[0]
        pos += size
    return pos - offset, 5
