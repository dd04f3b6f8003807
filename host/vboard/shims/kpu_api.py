"""The three KPU APIs; a profile exposes only its own generation (host.firmware "api"):

- legacy MaixPy `import KPU as kpu`: load / set_outputs / forward / init_yolo2 /
  run_yolo2 / deinit, at most 5 models;
- CanMV OLD `from maix import KPU`: load_kmodel / run_with_output;
- CanMV NEW `from maix import KPU`: load(path_or_offset, size=) / run / get_outputs.
"""
import array
import math
import struct

from host.vboard import fs
from host.vboard import kpu as _kpu
from host.vboard.image import Image
from host.vboard.shims import misc
from host.vboard.shims.base import new_module

MAX_LEGACY_MODELS = 5
_MAIXPY_ERR = "[MAIXPY]kpu: load error:%d, %s"


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


def _flash_model_size(board, offset):
    """A V5 model at a flash offset, given without size (legacy kpu.load): the header's
    module sizes tell how far it extends."""
    head = fs.read_flash(offset, 32)
    magic, version, header_size, _flags, _align, modules = struct.unpack_from("<4sIIIII", head)
    if magic != b"LDMK" or version != 5:
        return None, version if magic == b"LDMK" else struct.unpack_from("<I", head)[0]
    pos = offset + header_size
    for _ in range(modules):
        size = struct.unpack_from("<I", fs.read_flash(pos + 16 + 8, 4))[0]
        pos += size
    return pos - offset, 5


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


# ---------------------------------------------------------------- legacy `import KPU`
class _Task:
    def __init__(self, model, source):
        self.model = model
        self.source = source
        self.outputs = None
        self.yolo = None

    def __repr__(self):
        return "{\"model_addr\":%s, \"model_size\":%d}" % (
            self.source if isinstance(self.source, int) else "\"%s\"" % self.source,
            self.model.heap)


class _Fmap:
    def __init__(self, data):
        self._data = data

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._data[index].tolist()
        return float(self._data[index])

    def __len__(self):
        return len(self._data)


class _YoloObj:
    def __init__(self, rect, classid, value, index, objnum):
        self._rect, self._classid, self._value = rect, classid, value
        self._index, self._objnum = index, objnum

    def rect(self):
        return self._rect

    def x(self):
        return self._rect[0]

    def y(self):
        return self._rect[1]

    def w(self):
        return self._rect[2]

    def h(self):
        return self._rect[3]

    def classid(self):
        return self._classid

    def value(self):
        return self._value

    def index(self):
        return self._index

    def objnum(self):
        return self._objnum

    def __repr__(self):
        return ("{\"x\":%d, \"y\":%d, \"w\":%d, \"h\":%d, \"value\":%f, \"classid\":%d, "
                "\"index\":%d, \"objnum\":%d}" % (self._rect + (self._value, self._classid,
                                                               self._index, self._objnum)))


def _region_yolo2(out, shape, img_w, img_h, threshold, nms, anchors):
    """The firmware's region layer: classes derived assuming 5 anchors, at most 10 boxes."""
    c, gh, gw = shape
    classes = c // 5 - 5
    if classes < 1:
        raise ValueError("run_yolo2: output has %d channels, needs 5 x (5 + classes)" % c)
    n_anchor = len(anchors) // 2
    t = out.reshape(c, gh, gw)
    boxes = []
    for a in range(n_anchor):
        base = a * (5 + classes)
        for row in range(gh):
            for col in range(gw):
                tx, ty, tw, th, to = (float(t[base + e, row, col]) for e in range(5))
                obj = 1.0 / (1.0 + math.exp(-to))
                logits = [float(t[base + 5 + k, row, col]) for k in range(classes)]
                top = max(logits) if logits else 0.0
                exps = [math.exp(v - top) for v in logits] or [1.0]
                k = max(range(len(exps)), key=lambda i: exps[i])
                score = obj * exps[k] / sum(exps)
                if score <= threshold:
                    continue
                cx = (col + 1.0 / (1.0 + math.exp(-tx))) / gw
                cy = (row + 1.0 / (1.0 + math.exp(-ty))) / gh
                bw = math.exp(min(tw, 60.0)) * anchors[2 * a] / gw
                bh = math.exp(min(th, 60.0)) * anchors[2 * a + 1] / gh
                boxes.append((score, k, cx - bw / 2, cy - bh / 2, bw, bh))
    boxes.sort(key=lambda b: -b[0])
    kept = []
    for b in boxes:
        if all(o[1] != b[1] or _iou(o, b) <= nms for o in kept):
            kept.append(b)
    kept = kept[:10]
    objs = []
    for i, (score, k, x, y, w, h) in enumerate(kept):
        rect = (int(x * img_w), int(y * img_h), int(w * img_w), int(h * img_h))
        objs.append(_YoloObj(rect, k, score, i, len(kept)))
    return objs


def _iou(a, b):
    ax0, ay0, ax1, ay1 = a[2], a[3], a[2] + a[4], a[3] + a[5]
    bx0, by0, bx1, by1 = b[2], b[3], b[2] + b[4], b[3] + b[5]
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = a[4] * a[5] + b[4] * b[5] - inter
    return inter / union if union > 0 else 0.0


def build_legacy(board):
    if board.profile.api != "legacy":
        return None
    tasks = []

    def load(source):
        if len(tasks) >= MAX_LEGACY_MODELS:
            raise ValueError(_MAIXPY_ERR % (2009, "ERR_MODELS_FULL"))
        size = None
        if isinstance(source, int):
            size, version = _flash_model_size(board, source)
            if size is None:
                if version not in board.profile.kmodel_versions:
                    raise _kpu.firmware_error(board.profile.version_error)
                raise OSError("vboard: kmodel V%s at 0x%x cannot be simulated "
                              "(nncase 1.9 runs V5 only)" % (version, source))
        task = _Task(_kpu.Model(board, _kpu.read_model(source, size)), source)
        _check_uint8_input(task.model)
        tasks.append(task)
        return task

    def set_outputs(task, index, w, h, ch):
        shape = task.model.info["outputs"][index]["shape"]
        if w * h * ch * 4 != task.model.info["outputs"][index]["size"]:
            raise ValueError("set_outputs %dx%dx%d does not match output %d %s"
                             % (w, h, ch, index, shape))
        return True

    def forward(task, img, layer=None):
        task.outputs = task.model.run(_ai_input(task.model, img))
        return _Fmap(task.outputs[0])

    def init_yolo2(task, threshold, nms, anchor_num, anchors):
        if len(anchors) != 2 * anchor_num:
            raise ValueError("anchors must hold anchor_num pairs")
        task.yolo = (threshold, nms, tuple(anchors))
        return True

    def run_yolo2(task, img):
        if task.yolo is None:
            raise ValueError("call kpu.init_yolo2(task, ...) first")
        task.outputs = task.model.run(_ai_input(task.model, img))
        shape = task.model.info["outputs"][0]["shape"][-3:]
        threshold, nms, anchors = task.yolo
        objs = _region_yolo2(task.outputs[0], shape, img.width(), img.height(), threshold,
                             nms, anchors)
        return objs or None

    def deinit(task):
        if task in tasks:
            tasks.remove(task)
            task.model.free()
        return True

    return new_module("KPU", load=load, set_outputs=set_outputs, forward=forward,
                      init_yolo2=init_yolo2, run_yolo2=run_yolo2, deinit=deinit,
                      fmap_free=lambda fmap: None)
