"""The three KPU APIs; a profile exposes only its own generation (host.firmware "api"):

- legacy MaixPy `import KPU as kpu`: host/vboard/shims/kpu_legacy.py;
- CanMV releases (kendryte/canmv@main) `from maix import KPU`: load_kmodel /
  run_with_output (output 0 only) / init_yolo2 / deinit;
- CanMV feat/kpu `from maix import KPU`: load(path_or_offset, *, size=0) / run /
  get_outputs(i) (positional index only) / deinit (leaks the runtime context).
"""

from host.vboard import board as board_mod
from host.vboard import fs, gcheap
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
# Both CanMV generations take the model bytes with malloc (C heap, `utils.heap_free()`), as
# _kpu.Model accounts them. What differs is argument passing, return values, texts, prints
# and what deinit really frees; each method names the C function it follows.
MAX_CANMV_MODEL = 5 * 1024 * 1024
_KPU_OBJECT_SIZE = 400          # sizeof(mp_obj_k210_kpu_t), about (maix_kpu.c)


class _Leak:
    """C heap the firmware never frees again (a runtime context deinit forgot): it stays in
    the board's heap accounting (`board.session.models`) until the next (soft) reset."""
    id = None

    def __init__(self, nbytes):
        self.heap = nbytes


def _leak(board, model, nbytes):
    board.session.models.append(_Leak(nbytes))
    model.free()


def _ai_data_or(img, exc_type):
    """An Image's pix_ai buffer; `exc_type` with the firmware's text when it has none."""
    if not isinstance(img, Image):
        raise TypeError("expected an image")
    data = img.ai_data()
    if data is None:
        raise exc_type("Image formart error, use pix_to_ai() method to convert for kpu")
    return data


def _float_list(board, values):
    """The firmware's output list: mp_obj_new_list(n, NULL) and a new float per value, in the
    board's GC heap (host/vboard/gcheap.py)."""
    values = [float(v) for v in values]
    return board.heap.alloc(values, gcheap.float_list_parts(len(values)))


class KPUNew:
    """The object `maix.KPU()` returns on CanMV feat/kpu (kendryte/canmv@feat/kpu
    Maix/maix_kpu/maix_kpu.c: k210_kpu_make_new, malloc'd, never garbage collected)."""

    _board = None

    def __init__(self):
        self._model = None
        self._outputs = None
        self._ran = False
        self._dangling = False
        self._board.session.kpus.append(self)     # maix_kpu_helper_add_mem_to_list

    def _alive(self):
        if self._dangling:
            raise OSError("vboard: this KPU object was freed by the firmware after a Ctrl-C "
                          "(maixpy_main.c: deinit_kpu_timer_cb); a board would use freed "
                          "memory here")

    def load(self, path_or_offset, *, size=0):
        # kendryte/canmv@feat/kpu maix_kpu.c: k210_kpu_load_kmodel (size keyword-only)
        self._alive()
        if isinstance(path_or_offset, str):
            data = _kpu.read_model(path_or_offset)
            if size and size != len(data):
                raise OSError("Model in filesystem maybe damaged")
        elif isinstance(path_or_offset, int) and not isinstance(path_or_offset, bool):
            if path_or_offset <= 0:
                raise ValueError("Model offset error!")
            if not size:
                size, _ = _kpu.flash_model_size(path_or_offset)
            data = fs.read_flash(path_or_offset, size) if size and size > 0 else b""
        else:
            raise ValueError("Load_kmodel need one parameter, path(string) or offset(int)")
        if not 0 < len(data) < MAX_CANMV_MODEL:
            raise ValueError("Model size error!")
        if self._model is not None:
            # the old buffer is freed, the old runtime context is not (no kpu_model_free)
            _leak(self._board, self._model, _kpu.working_memory(self._model.info))
            self._model = None
        self._ran = False
        self._model = _kpu.Model(self._board, data)
        _check_uint8_input(self._model)

    def run(self, img):
        # kendryte/canmv@feat/kpu maix_kpu.c: k210_kpu_run_kmodel -> None
        self._alive()
        if self._model is None:
            raise OSError("Please load kmodel before")
        data = _ai_data_or(img, ValueError)
        _, _, h, w = self._model.input_shape
        if (img.width(), img.height()) != (w, h):
            self._board.write("model input %dx%d but image is %dx%d"
                              % (h, w, img.height(), img.width()))
            raise OSError(34)          # mp_raise_OSError(MP_ERANGE)
        self._outputs = self._model.run(data)
        self._ran = True

    def get_outputs(self, *args, **kwargs):
        # kendryte/canmv@feat/kpu maix_kpu.c: k210_kpu_get_outputs: the index is read only
        # from one positional int (`0x02 == n_args`); keywords are accepted and ignored
        self._alive()
        if self._model is None or not self._ran:
            raise OSError("Please load/run kmodel before")
        index = args[0] if len(args) == 1 and isinstance(args[0], int) else 0
        if not 0 <= index < len(self._outputs):
            raise OSError("Failed to get kpu outputs")
        return _float_list(self._board, self._outputs[index])

    def deinit(self):
        # kendryte/canmv@feat/kpu maix_kpu.c: k210_kpu_deinit frees the model buffer but
        # never calls kpu_model_free: the runtime's working memory leaks on every cycle
        self._alive()
        if self._model is not None:
            _leak(self._board, self._model, _kpu.working_memory(self._model.info))
        self._model = None
        self._ran = False


class KPUOld:
    """`maix.KPU` on CanMV releases (kendryte/canmv@main Maix/maix_kpu/Maix_kpu.c:
    k210_kpu_type; no finaliser: an unreferenced object keeps its model until reset)."""

    _board = None

    def __init__(self):
        # kendryte/canmv@main Maix_kpu.c: k210_kpu_make_new
        self._model = None
        self._freed = False
        self._yolo2 = None

    def load_kmodel(self, path=None, size=0):
        # kendryte/canmv@main Maix_kpu.c: py_kpu_load_kmodel (path and size positional or
        # keyword; prints "model size" for a file and "model load succeed" on success)
        board = self._board
        if path is None:
            raise ValueError("invalid path input")
        if isinstance(path, str):
            data = _kpu.read_model(path)
            board.write("model size %d \r\n" % len(data))
        elif isinstance(path, int) and not isinstance(path, bool):
            if path <= 0:
                raise ValueError("path error!")
            if size <= 0:
                raise ValueError("size error!")
            data = fs.read_flash(path, size)
        else:
            raise ValueError("path error!")
        old = self._model
        # a second load overwrites model_buffer without freeing it: the old model leaks
        self._model = _kpu.Model(board, data)
        if old is not None:
            _leak(board, old, old.heap)
        self._freed = False
        _check_uint8_input(self._model)
        if self not in board.session.kpus:
            board.session.kpus.append(self)       # kpu_model_buffer_add_ptr
        board.write("model load succeed\r\n")

    def init_yolo2(self, anchor=None, anchor_num=5, img_w=320, img_h=240, net_w=320,
                   net_h=240, layer_w=10, layer_h=8, threshold=None, nms_value=None,
                   classes=1):
        # kendryte/canmv@main Maix_kpu.c: py_init_yolo2 allocates yolo2_rl (which deinit
        # needs); the region layer itself (regionlayer_yolo2) is not emulated
        if anchor is None:
            raise ValueError("need input anchor")
        self._yolo2 = (list(anchor), anchor_num, layer_w, layer_h, classes)

    def run_with_output(self, input=None, getlist=False, get_feature=False):
        # kendryte/canmv@main Maix_kpu.c: py_kpu_run_with_output: kpu_get_output(ctx, 0)
        # only; a flat list of output 0 with getlist (or get_feature), else None
        if input is None:
            raise ValueError("invalid input")
        if self._model is None:
            # the firmware runs a NULL context here; the virtual board refuses instead
            raise OSError("vboard: run_with_output before load_kmodel")
        if isinstance(input, str):
            # a path feeds the file's raw bytes straight to the KPU as the input tensor
            with fs.open_file(input, "rb") as f:
                data = f.read()
            expected = self._model.info["inputs"][0]["size"]
            if len(data) != expected:
                raise ValueError("vboard: input file has %d bytes, the model takes %d"
                                 % (len(data), expected))
        elif isinstance(input, Image):
            data = _ai_data_or(input, OSError)
            _, _, h, w = self._model.input_shape
            if (input.width(), input.height()) != (w, h):
                # the firmware does not check: the KPU reads past or short of pix_ai
                raise OSError("vboard: image size %dx%d differs from the model input %dx%d"
                              % (input.width(), input.height(), w, h))
        else:
            raise ValueError("invalid input")
        first = self._model.run(data)[0]
        if get_feature and not getlist:
            if len(first) > 256:
                raise ValueError("feature len out of 256\r\n")
            norm = float(sum(float(v) * float(v) for v in first)) ** 0.5 or 1.0
            return _float_list(self._board, [float(v) / norm for v in first])
        if getlist:
            return _float_list(self._board, first)
        return None

    def deinit(self):
        # kendryte/canmv@main Maix_kpu.c: py_kpu_deinit: False without a model; else frees
        # the model, prints, then yolo_region_layer_deinit(km->yolo2_rl) and
        # km->yolo2_rl->anchor: a NULL dereference unless init_yolo2 ran
        if self._model is None or self._freed:
            return False
        self._model.free()
        self._freed = True
        if self in self._board.session.kpus:
            self._board.session.kpus.remove(self)  # kpu_model_buffer_del_ptr
        self._board.write("free kpu model buf succeed\r\n")
        if self._yolo2 is None:
            _null_dereference(self._board, "py_kpu_deinit: yolo2_rl is NULL")
        return True


def _null_dereference(board, where):
    """A load from address 0: the K210 traps and stops answering until RESET."""
    board.halt("load access fault at 0x0 in %s" % where)


# maixpy_main.c: free_km_buf_timer_init: 40 ticks of 10 ms
CTRL_C_FREE_DELAY = 0.4


def free_after_ctrl_c(board, session):
    """maixpy_main.c: deinit_kpu_timer_cb (timer thread), 400 ms after a Ctrl-C that
    interrupted running code. CanMV main (kpu_model_buffer_free_all_ptr) deinits every
    loaded KPU object, as py_kpu_deinit does (NULL yolo2_rl included); feat/kpu
    (maix_kpu_helper_free_mem_list) frees every KPU object and model buffer it listed, never
    the runtime contexts. Objects a script still holds are then dangling: the virtual board
    refuses to use them."""
    if board.session is not session:
        return                          # the board restarted meanwhile
    objs, session.kpus = list(session.kpus), []
    if board.profile.api == "old":
        count = 0
        for k in objs:
            if k._model is not None and not k._freed:
                count += 1
                try:
                    k.deinit()
                except board_mod.Trapped:
                    return
        board.write(("free %d kpu model buffer\n>>>\r\n" % count).replace("\n", "\r\n")
                    .replace("\r\r", "\r").encode())
        return
    count, size = 0, 0
    for k in objs:
        count += 1
        size += _KPU_OBJECT_SIZE
        if k._model is not None:
            count += 1
            size += len(k._model._data or b"") or k._model.heap
            _leak(board, k._model, _kpu.working_memory(k._model.info))
            k._model = None
        k._dangling = True
    board.write(("free %d kpu buffers, size %d\n>>>\r\n" % (count, size))
                .replace("\n", "\r\n").replace("\r\r", "\r").encode())


def build_maix(board):
    """`maix` on CanMV (kendryte/canmv@main components/micropython/port/include/
    mpconfigport.h registers MP_QSTR_maix; Maix/modMaix.c: maix_module_globals_table). KPU is
    a type on main and a function returning a malloc'd object on feat/kpu
    (modMaix.c@feat/kpu: mod_maix_new_kpu)."""
    if board.profile.api not in ("new", "old"):
        return None                  # MaixPy-v1 has `Maix` (build_Maix), no `maix`
    attrs = {"utils": misc.build_utils(board)}
    if board.profile.api == "new":
        kpu_type = type("KPU", (KPUNew,), {"_board": board})
        attrs["KPU"] = lambda: kpu_type()
    elif board.profile.api == "old":
        attrs["KPU"] = type("KPU", (KPUOld,), {"_board": board})
    return new_module("maix", **attrs)


def build_Maix(board):
    """`Maix` on MaixPy-v1 (sipeed/MaixPy-v1 components/micropython/port/include/
    mpconfigport.h registers MP_QSTR_Maix; Maix/modMaix.c: utils, no KPU); CanMV has none."""
    if board.profile.api != "legacy":
        return None
    return new_module("Maix", utils=misc.build_utils(board))
