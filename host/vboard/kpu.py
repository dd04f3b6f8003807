"""The KPU: kmodels loaded the way the firmware loads them, run by nncase's Simulator.

Loading follows the firmware: read the bytes (a file on the board or `size` bytes of the
flash chip), check the kmodel version against the profile, then take the model plus its
working memory out of the system heap (`utils.heap_free()`); each failure raises the
profile's own exception and text. nncase 1.9 can only simulate V5 models: a V3/V4 model a
profile accepts loads, but running it raises a vboard error saying so.
"""
import nncase
import numpy as np

from host import kmodel
from host.errors import UserError
from host.vboard import fs

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
        self.sim = None
        if self.info["version"] == 5:
            self.sim = nncase.Simulator()
            try:
                self.sim.load_model(bytes(data))
            except RuntimeError:
                raise firmware_error(profile.format_error)
        board.session.models.append(self)

    def free(self):
        if self in self.board.session.models:
            self.board.session.models.remove(self)
        self.sim = None

    @property
    def input_shape(self):
        return self.info["inputs"][0]["shape"]           # [1, 3, H, W]

    def output_count(self):
        return len(self.info["outputs"])

    def run(self, planar):
        """uint8 planar R,G,B bytes (the image's AI buffer) -> list of flat float32 arrays."""
        if self.sim is None:
            raise OSError("vboard: kmodel V%d cannot be simulated (nncase 1.9 runs V5 only)"
                          % self.info["version"])
        shape = self.input_shape
        tensor = np.frombuffer(planar, dtype=np.uint8).reshape(shape)
        self.sim.set_input_tensor(0, nncase.RuntimeTensor.from_numpy(tensor.copy()))
        self.sim.run()
        return [self.sim.get_output_tensor(i).to_numpy().astype(np.float32).ravel()
                for i in range(self.sim.outputs_size)]


def heap_free(board):
    return board.profile.heap_bytes - sum(m.heap for m in board.session.models)
