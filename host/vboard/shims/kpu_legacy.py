"""Legacy MaixPy `import KPU as kpu` (MaixPy-v1 firmware, profiles maixpy-v4/maixpy-v3):
load / set_outputs / forward / get_output / init_yolo2 / run_yolo2 / deinit / fmap /
fmap_free, at most 5 models.

sipeed/MaixPy-v1 components/micropython/port/src/Maix/Maix_kpu.c (master d8901fd), each
function below after the C function named in its docstring. The sipeed_kpu_* calls it makes
live in lib_sipeed_kpu*.a, a binary blob: what they do is taken from the error table
(get_kpu_err_str, sipeed_kpu.h) and the blob's symbol names, and said so where it matters.
The model itself runs in host/vboard/kpu.py (V4: ncc infer; V5: nncase's simulator).
"""

import numpy as np

from host.vboard import board as board_mod
from host.vboard import gcheap
from host.vboard import kpu as _kpu
from host.vboard.image import Image
from host.vboard.shims.base import new_module
from host.vboard.shims.kpu_api import _check_uint8_input

MAX_LEGACY_MODELS = 5
ERR_READ_FILE, ERR_MODELS_FULL = 2005, 2009
_ERR_TEXT = {  # get_kpu_err_str
    ERR_READ_FILE: "ERR_READ_FILE: read file failed",
    ERR_MODELS_FULL: "ERR_MODELS_FULL: we only support load 5 models in the same time",
}
_ERR_OUTPUTS_SET = "ERR_OUTPUTS_SET: need kpu.set_outputs() to set shape"  # ..._OUTPUTS_NODONE
_MODEL_SUFFIXES = (".kmodel", ".smodel", ".emodel")
_YOLO_MAX_OBJECTS = 10  # sipeed_yolo2.h obj_info_t.obj[10]


def _load_error(code):
    return ValueError("[MAIXPY]kpu: load error:%d, %s" % (code, _ERR_TEXT[code]))


class _Task:
    """py_kpu_net_obj_t (type kpu_net), what kpu.load returns."""

    def __init__(self, model, source, size):
        self.model = model
        self.source = source
        self.size = size
        self.shapes = {}          # set_outputs: output index -> (w, h, ch)
        self.outputs = None       # the KPU's output buffers, reused by every run (fmaps alias)
        self.yolo = None          # init_yolo2's region layer arguments (net_args)

    def model_addr(self):
        return self.source if isinstance(self.source, int) else None

    def model_size(self):
        return self.size

    def model_path(self):
        return self.source if isinstance(self.source, str) else None

    def net_arg(self):
        return self.yolo

    def __repr__(self):  # py_kpu_net_obj_print (printf's %s of NULL prints "(null)")
        return ('{"model_addr": %d, "model_size": %d, "model_path": "%s", "net_args": %s}'
                % (self.model_addr() or 0, self.size, self.model_path() or "(null)",
                   repr(self.yolo) if self.yolo is not None else '"(null)"'))


class _YoloArgs:
    """py_kpu_class_yolo_args_obj_t (type kpu_yolo2), init_yolo2's net_args."""

    def __init__(self, threshold, nms_value, anchors):
        self._threshold, self._nms_value, self._anchor = threshold, nms_value, tuple(anchors)

    def threshold(self):
        return self._threshold

    def nms_value(self):
        return self._nms_value

    def anchor_number(self):
        return len(self._anchor) // 2

    def anchor(self):
        return self._anchor

    def __repr__(self):  # py_kpu_class_yolo2_print
        return ('{"threshold":%f, "nms_value":%f, "anchor_number":%d, "anchor":"(%s)"}'
                % (self._threshold, self._nms_value, self.anchor_number(),
                   ", ".join("%f" % a for a in self._anchor)))


class _Fmap:
    """py_kpu_fmap_obj_t (type kpu_fmap): a view of one KPU output buffer; the next run
    overwrites what an older fmap shows, as on the board. py_fmap_subscr: an index gives a
    number, a slice (step 1 only) a tuple; typecode 'f' (V4: float32) or 'B' (a V3 model whose
    last layer is a KPU conv: uint8 0..255). No len() (the type has no unary op)."""

    def __init__(self, data, index, w, h, ch, typecode):
        self._data, self._index = data, index
        self._w, self._h, self._ch, self._typecode = w, h, ch, typecode

    def _convert(self, value):
        return int(value) if self._typecode == "B" else float(value)

    def _bounds(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self._data))
            if step != 1:  # mp_seq_get_fast_slice_indexes() is false
                raise OSError("only slices with step=1 (aka None) are supported")
            return slice(start, max(start, stop))
        if not isinstance(index, int):
            raise TypeError("kpu_fmap indices must be integers, not %s" % type(index).__name__)
        if not -len(self._data) <= index < len(self._data):
            raise IndexError("kpu_fmap index out of range")
        return index

    def __getitem__(self, index):
        where = self._bounds(index)
        if isinstance(where, slice):
            # a new tuple of new floats (small ints for 'B') in the GC heap
            items = tuple(self._convert(v) for v in self._data[where].tolist())
            if not items:
                return items            # mp_obj_new_tuple(0): the empty tuple constant
            parts = ([gcheap.OBJ_TUPLE_HEAD + gcheap.BYTES_PER_WORD * len(items)]
                     if self._typecode == "B" else gcheap.float_tuple_parts(len(items)))
            return board_mod.current().heap.alloc(items, parts)
        return self._convert(self._data[where])

    def __setitem__(self, index, value):
        where = self._bounds(index)
        if isinstance(where, slice) and isinstance(value, list):
            if len(value) != where.stop - where.start:
                raise ValueError("cannot grow or shrink image")
        self._data[where] = value

    def size(self):
        return int(self._data.nbytes)

    def index(self):
        return self._index

    def w(self):
        return self._w

    def h(self):
        return self._h

    def ch(self):
        return self._ch

    def typecode(self):
        return self._typecode

    def __repr__(self):  # py_kpu_fmap_print
        return ('{"fmap": "data"=0x%x, "size"=%d, "index": %d, "w": %d, "h": %d, "ch": %d, '
                '"typecode": %s}' % (id(self._data) & 0xFFFFFFFF, self.size(), self._index,
                                    self._w, self._h, self._ch, self._typecode))


class _YoloObj:
    """py_kpu_class_yolo2_find_obj_t (type kpu_yolo2_find), one run_yolo2 result."""

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

    def __repr__(self):  # py_kpu_class_yolo2_find_print
        return ("{\"x\":%d, \"y\":%d, \"w\":%d, \"h\":%d, \"value\":%f, \"classid\":%d, "
                "\"index\":%d, \"objnum\":%d}" % (self._rect + (self._value, self._classid,
                                                               self._index, self._objnum)))


def _region_yolo2(out, shape, net_w, net_h, threshold, nms_value, anchors):
    """sipeed_yolo2.c region_layer_init + region_layer_run on output 0 (`out`: the float32
    output buffer, changed in place as the firmware's is: sigmoid on x, y, obj, softmax on
    the classes). shape (w, h, ch) is the output's; classes = ch / 5 - 5 whatever the anchor
    count (region_layer_init). Boxes are in the model input's pixels (image_width = the
    input width). -> [(x1, y1, x2, y2, classid, prob)] in output order."""
    w, h, ch = shape
    classes = ch // 5 - 5
    n_anchor = len(anchors) // 2
    wh = w * h
    used = n_anchor * (classes + 5) * wh
    if classes < 1 or used > out.size:
        raise OSError("vboard: run_yolo2 with %d channels and %d anchors reads outside the "
                      "KPU output on a K210 (it needs anchors x (5 + classes) channels, "
                      "classes = ch / 5 - 5)" % (ch, n_anchor))
    t = out[:used].reshape(n_anchor, classes + 5, wh)     # a view: in place, like the C
    t[:, 0:2] = 1.0 / (1.0 + np.exp(-t[:, 0:2]))         # forward_region_layer
    t[:, 4] = 1.0 / (1.0 + np.exp(-t[:, 4]))
    logits = t[:, 5:]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    t[:, 5:] = e / e.sum(axis=1, keepdims=True)
    cells = np.arange(wh)                                  # get_region_boxes
    a_w = np.asarray(anchors[0::2], np.float32)[:, None]
    a_h = np.asarray(anchors[1::2], np.float32)[:, None]
    bx = ((cells % w) + t[:, 0]) / w
    by = ((cells // w) + t[:, 1]) / h
    bw = np.exp(t[:, 2]) * a_w / w
    bh = np.exp(t[:, 3]) * a_h / h
    probs = t[:, 4:5] * t[:, 5:]                           # [anchor, class, cell]
    probs = np.where(probs > threshold, probs, np.float32(0))
    boxes = np.stack([bx, by, bw, bh], -1).reshape(-1, 4)  # box index = anchor * wh + cell
    probs = probs.transpose(0, 2, 1).reshape(-1, classes).copy()
    # correct_region_boxes: net size == image size in region_layer_init, so no change
    for k in range(classes):                               # do_nms_sort
        order = [i for i in np.argsort(-probs[:, k], kind="stable") if probs[i, k] != 0]
        for pos, i in enumerate(order):
            if probs[i, k] == 0:
                continue
            for j in order[pos + 1:]:
                if _box_iou(boxes[i], boxes[j]) > nms_value:
                    probs[j, k] = 0
    found = []                                             # region_layer_output
    for i in range(len(boxes)):
        k = int(np.argmax(probs[i]))
        if probs[i, k] > threshold:
            x, y, bw_, bh_ = (float(v) for v in boxes[i])
            corners = (x * net_w - bw_ * net_w / 2, y * net_h - bh_ * net_h / 2,
                       x * net_w + bw_ * net_w / 2, y * net_h + bh_ * net_h / 2)
            # uint32_t fields: RISC-V's float -> unsigned conversion saturates below 0
            found.append(tuple(max(0, int(c)) for c in corners) + (k, float(probs[i, k])))
    # obj_info_t holds 10 objects: the firmware writes past it beyond that; keep 10
    return found[:_YOLO_MAX_OBJECTS]


def _box_iou(a, b):
    """sipeed_yolo2.c box_iou on centre boxes (x, y, w, h)."""
    def overlap(x1, w1, x2, w2):
        return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)
    iw, ih = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
    inter = 0.0 if iw < 0 or ih < 0 else iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else float("nan")


def _args(names, args, kwargs, defaults):
    """mp_arg_parse_all: positional then keyword arguments by name, with defaults."""
    values = dict(defaults)
    values.update(zip(names, args))
    values.update(kwargs)
    return [values.get(n) for n in names]


def build_legacy(board):
    if board.profile.api != "legacy":
        return None
    tasks = []

    def say(text):  # mp_printf(&mp_plat_print, ...): straight into the REPL UART
        board.write(text.encode("utf-8"))

    def load(source):
        """py_kpu_class_load: a flash address (int > 0) or a path naming a .kmodel/.smodel/
        .emodel; load errors are ValueError "[MAIXPY]kpu: load error:CODE, TEXT"."""
        if isinstance(source, bool) or not isinstance(source, (int, str)):
            raise TypeError("[MAIXPY]kpu: only accept int or string")
        if isinstance(source, int) and source <= 0:
            raise ValueError("[MAIXPY]kpu: model_addr must > 0 ")
        if isinstance(source, str) and not any(s in source for s in _MODEL_SUFFIXES):
            raise ValueError("[MAIXPY]kpu: model format don't match, only supply .kmodel ")
        if len(tasks) >= MAX_LEGACY_MODELS:  # the blob's models_in_use table
            raise _load_error(ERR_MODELS_FULL)
        size = None
        if isinstance(source, int):
            size, version = _kpu.flash_model_size(source)
            if size is None and version == 3 and 3 in board.profile.kmodel_versions:
                raise OSError("vboard: a V3 kmodel (no host runtime) from flash is not emulated")
            if size is None:          # not a kmodel the loader knows: its version check fails
                raise _kpu.firmware_error(board.profile.version_error)
        try:
            data = _kpu.read_model(source, size)
        except OSError:               # the blob's file read failing (inferred)
            raise _load_error(ERR_READ_FILE)
        task = _Task(_kpu.Model(board, data), source, len(data))
        _check_uint8_input(task.model)
        tasks.append(task)
        return task

    def set_outputs(task, index, w, h, ch):
        """py_kpu_class_set_outputs -> sipeed_kpu_set_outputs_shape: a wrong index or a
        w*h*ch that does not match the output's size prints a line and returns False."""
        if not (isinstance(task, _Task) and all(isinstance(v, int) for v in (index, w, h, ch))):
            raise ValueError("[MAIXPY]kpu: set_outputs arg format error: set_outputs(task, "
                             "int idx, int w, int h, int ch)")
        outputs = task.model.info["outputs"]
        if not 0 <= index < len(outputs):
            say("[MAIXPY]kpu: set_outputs arg value error:kmodel output idx %d out of range\r\n"
                % index)
            return False
        if w * h * ch * 4 != outputs[index]["size"]:
            say("[MAIXPY]kpu: set_outputs arg value error: w,c,ch size not match output "
                "size\r\n")
            return False
        task.shapes[index] = (w, h, ch)
        return True

    def check_img_format(task, img):
        """check_img_format(): the image's AI buffer against the model input."""
        if not isinstance(img, Image):
            raise ValueError("input not support")
        data = img.ai_data()
        _, _, h, w = task.model.input_shape
        if data is None:
            say("[MAIXPY]kpu: pix_ai is NULL!\r\n")
        elif (img.width(), img.height()) != (w, h):
            say("[MAIXPY]kpu: img w=%d,h=%d, but model w=%d,h=%d\r\n"
                % (img.width(), img.height(), w, h))
        else:
            return data
        raise ValueError("[MAIXPY]kpu: check img format err!\r\n")

    def run(task, img):
        """sipeed_kpu_model_run: a V4 model needs every output's shape first (the blob's
        _check_outputs_setting; its error is OSError with get_kpu_err_str's text)."""
        data = check_img_format(task, img)
        if task.model.info["version"] == 4 and len(task.shapes) < task.model.output_count():
            raise OSError(_ERR_OUTPUTS_SET)
        outs = task.model.run(data)
        if task.outputs is None or [o.size for o in task.outputs] != [o.size for o in outs]:
            task.outputs = [np.array(o, np.float32) for o in outs]
        else:
            for buffer, new in zip(task.outputs, outs):
                np.copyto(buffer, new)

    def fmap(task, index, what):
        """The fmap of output `index` (py_kpu_forward / py_kpu_get_output, V4 branch)."""
        if task.outputs is None or not 0 <= index < len(task.outputs):
            raise OSError(what + " err")
        shape = task.shapes.get(index)
        if shape is None and task.model.info["outputs"][index]["shape"]:
            # a kmodel that stores its output shapes (V5, on a build that loads it)
            *_, ch, h, w = [1, 1, 1] + list(task.model.info["outputs"][index]["shape"])
            shape = (w, h, ch)
        if shape is None:
            raise OSError(("sipeed_kpu_get_outputs_shape" if what.startswith("sipeed")
                           else "get_outputs_shape") + " err")
        w, h, ch = shape
        return _Fmap(task.outputs[index], task.model.info.get("nodes", 1) - 1, w, h, ch, "f")

    def forward(*args, **kwargs):
        """py_kpu_forward(kpu_net, img, out_index=0, dma=-1): runs the model, returns the
        fmap of output out_index; kpu.get_output(task, i) reaches the others. A first
        argument that is no kpu_net returns None."""
        task, img, out_index, _dma = _args(("kpu_net", "img", "out_index", "dma"), args,
                                           kwargs, {"out_index": 0, "dma": -1})
        if not isinstance(task, _Task):
            return None
        if isinstance(img, list):
            raise OSError("vboard: kpu.forward(task, list) (float input) is not emulated")
        run(task, img)
        return fmap(task, out_index, "sipeed_kpu_get_output")

    def get_output(task, index):
        """py_kpu_get_output(task, idx): output idx of the last run."""
        if not isinstance(task, _Task) or not isinstance(index, int):
            raise ValueError("[MAIXPY]kpu: get_output arg format error: get_output(task, int "
                             "idx)")
        return fmap(task, index & 0xFFFF, "get_output")   # uint16_t out_index

    def init_yolo2(*args, **kwargs):
        """py_kpu_class_init_yolo2(kpu_net, threshold, nms_value, anchor_number, anchor,
        dma=-1)."""
        task, threshold, nms_value, anchor_number, anchor, _dma = _args(
            ("kpu_net", "threshold", "nms_value", "anchor_number", "anchor", "dma"), args,
            kwargs, {"anchor_number": 0, "dma": -1})
        if not isinstance(task, _Task):
            raise TypeError("[MAIXPY]kpu: kpu_net type error")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError("[MAIXPY]kpu: threshold only support 0 to 1")
        if not 0.0 <= float(nms_value) <= 1.0:
            raise ValueError("[MAIXPY]kpu: nms_value only support 0 to 1")
        if anchor_number <= 0:
            raise ValueError("[MAIXPY]kpu: anchor_number should > 0")
        anchor = list(anchor)
        if len(anchor) != 2 * anchor_number:     # mp_obj_get_array_fixed_n
            raise ValueError("requested length %d but object has length %d"
                             % (2 * anchor_number, len(anchor)))
        task.yolo = _YoloArgs(float(threshold), float(nms_value), [float(a) for a in anchor])
        return True

    def run_yolo2(task, img):
        """py_kpu_class_run_yolo2: the model, then the region layer (sipeed_yolo2.c) on
        output 0; a list of kpu_yolo2_find objects, or None."""
        if not isinstance(task, _Task):
            raise TypeError("[MAIXPY]kpu: kpu_net type error")
        if task.yolo is None:
            raise OSError("vboard: run_yolo2 before init_yolo2 dereferences NULL net_args "
                          "on a K210")
        run(task, img)
        _, _, net_h, net_w = task.model.input_shape
        shape = task.shapes.get(0) or (net_w, net_h, task.outputs[0].size // (net_w * net_h))
        found = _region_yolo2(task.outputs[0], shape, net_w, net_h, task.yolo.threshold(),
                              task.yolo.nms_value(), task.yolo.anchor())
        if not found:
            return None
        return [_YoloObj((x1, y1, x2 - x1, y2 - y1), k, p, i, len(found))
                for i, (x1, y1, x2, y2, k, p) in enumerate(found)]

    def deinit(task):
        """py_kpu_deinit: frees the model (sipeed_kpu_model_destroy) and the yolo2 args;
        True, also when called again."""
        if not isinstance(task, _Task):
            raise TypeError("[MAIXPY]kpu: kpu_net type error")
        if task in tasks:
            tasks.remove(task)
            task.model.free()
        task.yolo = None
        return True

    def fmap_to_image(fm, ch):
        """py_kpu_fmap: a channel of a uint8 fmap as a grayscale image (V3 only)."""
        if not 0 <= ch < fm.ch():
            raise ValueError("[MAIXPY]kpu: ch err,input 0~%d\r\n" % fm.ch())
        if fm.typecode() != "B":
            raise ValueError("[MAIXPY]kpu: can't convet float fmap yet\r\n")
        raise OSError("vboard: kpu.fmap of a uint8 (V3) fmap is not emulated")

    return new_module("KPU", load=load, set_outputs=set_outputs, forward=forward,
                      get_output=get_output, init_yolo2=init_yolo2, run_yolo2=run_yolo2,
                      deinit=deinit, fmap=fmap_to_image,
                      fmap_free=lambda fm: None)   # py_kpu_fmap_free: does nothing
