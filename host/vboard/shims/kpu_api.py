"""The three KPU APIs; a profile exposes only its own generation (host.firmware "api"):

- legacy MaixPy `import KPU as kpu`: host/vboard/shims/kpu_legacy.py;
- CanMV OLD `from maix import KPU`: load_kmodel / run_with_output;
- CanMV NEW `from maix import KPU`: load(path_or_offset, size=) / run / get_outputs.
"""
import array

from host.vboard import fs
from host.vboard import kpu as _kpu
from host.vboard.image import Image
from host.vboard.shims import misc
from host.vboard.shims.base import new_module



def _ai_input(model, img):
    """The image's KPU buffer, checked against the model input like kpu.run does."""
    if not isinstance(img, Image):
        raise TypeError("expected an image")
    data = img.ai_data()
    if data is None:
        raise ValueError("image has no AI data: call img.pix_to_ai() first")
    _, _, h, w = model.input_shape
    if (img.width(), img.height()) != (w, h):
        raise OSError("image size %dx%d differs from the model input %dx%d"
                      % (img.width(), img.height(), w, h))
    return data


def _check_uint8_input(model):
    if model.info["inputs"][0]["dtype"] != "uint8":
        raise OSError("vboard: model input is %s; the KPU feeds uint8 [1,3,H,W] "
                      "(compile with preprocess and input_type uint8)"
                      % model.info["inputs"][0]["dtype"])


# ---------------------------------------------------------------- CanMV (maix.KPU)
class KPU:
    """`from maix import KPU` on CanMV; `new` selects load/run/get_outputs, else OLD."""

    _board = None
    _new = True

    def __init__(self):
        self._model = None
        self._outputs = None

    def _load(self, source, size):
        if self._model is not None:
            self._model.free()
        self._model = _kpu.Model(self._board, _kpu.read_model(source, size))
        _check_uint8_input(self._model)
        self._outputs = None

    def _run(self, data):
        if self._model is None:
            raise OSError("no model loaded")
        self._outputs = self._model.run(data)

    def deinit(self):
        if self._model is not None:
            self._model.free()
        self._model = None
        self._outputs = None

    __del__ = deinit


class KPUNew(KPU):
    def load(self, path_or_offset, *, size=None):
        self._load(path_or_offset, size)

    def run(self, img):
        if self._model is None:
            raise OSError("no model loaded")
        self._run(_ai_input(self._model, img))
        return True

    def get_outputs(self, index=0):
        if self._outputs is None:
            raise OSError("no outputs: call kpu.run(img) first")
        return self._outputs[index].tolist()

    def get_output_count(self):
        return 0 if self._model is None else self._model.output_count()


class KPUOld(KPU):
    def load_kmodel(self, path_or_offset, size=None):
        self._load(path_or_offset, size)

    def run_with_output(self, input, getlist=False):
        if self._model is None:
            raise OSError("no model loaded")
        if isinstance(input, str):
            # a path feeds the file's raw bytes straight to the KPU as the input tensor
            with fs.open_file(input, "rb") as f:
                data = f.read()
            expected = self._model.info["inputs"][0]["size"]
            if len(data) != expected:
                raise ValueError("input file has %d bytes, the model takes %d"
                                 % (len(data), expected))
        else:
            data = _ai_input(self._model, input)
        self._run(data)
        if getlist:
            lists = [out.tolist() for out in self._outputs]
            return lists[0] if len(lists) == 1 else lists
        return array.array("f", self._outputs[0].tobytes())


def build_maix(board):
    attrs = {"utils": misc.build_utils(board)}
    if board.profile.api in ("new", "old"):
        cls = KPUNew if board.profile.api == "new" else KPUOld
        attrs["KPU"] = type("KPU", (cls,), {"_board": board})
    return new_module("maix", **attrs)
