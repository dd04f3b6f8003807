# The kmodel behind the three KPU API generations of MaixPy-v1 / CanMV (Model), and the
# decoder step that turns its outputs into boxes. MicroPython 1.11 dialect; firmware
# modules are imported lazily.
import gc

try:
    import utime as time
except ImportError:  # pragma: no cover - the board always has utime
    import time
try:
    import decoders
except ImportError:
    from device import decoders

API_NEW = "canmv-new"      # from maix import KPU: load(path_or_offset, size=) / run / get_outputs
API_OLD = "canmv-old"      # from maix import KPU: load_kmodel / run_with_output
API_LEGACY = "maixpy-kpu"  # import KPU as kpu: load / set_outputs / forward

CTRL_C_FREE_MS = 450


def maix_utils():
    """Maix.utils (MaixPy-v1) or maix.utils (CanMV: the module is lowercase), or None."""
    try:
        from maix import utils
        return utils
    except ImportError:
        pass
    try:
        from Maix import utils
        return utils
    except ImportError:
        return None


def detect_api():
    """(api name, KPU object or module); chosen by what the firmware offers. CanMV releases'
    maix.KPU is a type (its dir() lists the methods); feat/kpu's is a function returning a
    C-heap object, so it is only called when it is the API used."""
    try:
        from maix import KPU as _KPU
        names = dir(_KPU)
        if "load_kmodel" in names and "run_with_output" in names:
            return API_OLD, _KPU()
        k = _KPU()
        names = dir(k)
        if "load" in names and "run" in names and "get_outputs" in names:
            return API_NEW, k
        if "load_kmodel" in names and "run_with_output" in names:
            return API_OLD, k
    except ImportError:
        pass
    try:
        import KPU as kpu
        names = dir(kpu)
        if "load" in names and "forward" in names:
            return API_LEGACY, kpu
    except ImportError:
        pass
    return None, None


def err_text(e):
    return "%s: %s" % (type(e).__name__, e)


# CanMV feat/kpu's deinit never frees the nncase context (maix_kpu.c: k210_kpu_deinit): a
# model loaded there stays loaded for the next session of this boot instead (key, KPU).
_KEPT = [None, None]


def _model_key(cfg):
    m = cfg["model"]
    return (m["source"], m.get("address"), m.get("size"), m.get("path"), m.get("sha256"))


def forget_kept_model():
    """A Ctrl-C while code runs makes CanMV free every KPU buffer 400 ms later
    (maixpy_main.c: deinit_kpu_timer_cb): the kept object is gone then."""
    _KEPT[0] = None
    _KEPT[1] = None


def _wait_out_kpu_timer():
    """A Ctrl-C that interrupted code makes CanMV free every KPU object and buffer 400 ms
    later (maixpy_main.c: deinit_kpu_timer_cb), one made just now included: on CanMV (the
    `maix` module) let that timer pass before making any."""
    try:
        import maix
    except ImportError:
        return
    time.sleep_ms(CTRL_C_FREE_MS)


class Model:
    """One loaded kmodel behind the three KPU API generations. Never raises
    on load: .error holds the firmware's message."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.shapes = [tuple(o["shape"]) for o in cfg["outputs"]]
        self.api = None
        self.k = None
        self.task = None
        self.error = None
        key = _model_key(cfg)
        if _KEPT[0] == key:
            self.api, self.k, self.task = API_NEW, _KEPT[1], _KEPT[1]
            return
        _wait_out_kpu_timer()
        if _KEPT[1] is not None:
            self.api, self.k = API_NEW, _KEPT[1]     # load again on the same object
        else:
            try:
                self.api, self.k = detect_api()
            except Exception as e:
                self.error = "KPU unavailable: " + err_text(e)
                return
        if self.api is None:
            self.error = "this firmware has no KPU API (no maix.KPU, no KPU module)"
            return
        if self.api == API_OLD and len(self.shapes) > 1:
            self.error = ("model has %d outputs but CanMV's run_with_output returns output 0 "
                          "only: use a one-output model, or firmware canmv-v5 or MaixPy"
                          % len(self.shapes))
            return
        try:
            self._load()
        except Exception as e:
            self.error = "model load failed (%s, %s): %s" % (self.api, self._where(), err_text(e))
            self.task = None
            gc.collect()
            return
        if self.api == API_NEW:
            _KEPT[0] = key
            _KEPT[1] = self.k

    def _where(self):
        m = self.cfg["model"]
        if m["source"] == "flash":
            return "flash 0x%x size %d" % (m["address"], m["size"])
        return m["path"]

    def loaded(self):
        return self.error is None

    def _load(self):
        m = self.cfg["model"]
        flash = m["source"] == "flash"
        gc.collect()
        if self.api == API_NEW:
            _KEPT[0] = None
            if flash:
                self.k.load(m["address"], size=m["size"])
            else:
                self.k.load(m["path"])
            self.task = self.k
        elif self.api == API_OLD:
            if flash:
                self.k.load_kmodel(m["address"], m["size"])
            else:
                self.k.load_kmodel(m["path"])
            # deinit (ours, or the firmware's after a Ctrl-C) dereferences yolo2_rl, NULL
            # unless init_yolo2 ran (Maix_kpu.c: py_kpu_deinit): give it a 1x1 layer
            self.k.init_yolo2([1.0, 1.0], anchor_num=1, img_w=1, img_h=1, net_w=1, net_h=1,
                              layer_w=1, layer_h=1, classes=1)
            self.task = self.k
        else:
            kpu = self.k
            self.task = kpu.load(m["address"] if flash else m["path"])
            if m.get("version", 3) >= 4 and "set_outputs" in dir(kpu):
                # V4 stores no output shapes; a mismatch prints and returns False
                for i, s in enumerate(self.shapes):
                    if not kpu.set_outputs(self.task, i, s[2], s[1], s[0]):
                        raise OSError("kpu.set_outputs(task, %d, %d, %d, %d) refused"
                                      % (i, s[2], s[1], s[0]))

    def run(self, img):
        """Run on an Image that has pix_to_ai() data; -> list of flat CHW floats."""
        n = len(self.shapes)
        if self.api == API_NEW:
            self.k.run(img)
            # the index is positional only: get_outputs(index=i) returns output 0
            outs = [self.k.get_outputs(i) for i in range(n)]
        elif self.api == API_OLD:
            outs = [self.k.run_with_output(img, getlist=True)]   # output 0 only, flat
        else:
            # forward runs the model and gives output 0; get_output(task, i) the others
            outs = [self.k.forward(self.task, img)[:]]
            for i in range(1, n):
                outs.append(self.k.get_output(self.task, i)[:])
        if len(outs) < n:
            raise OSError("KPU gave %d outputs, config lists %d" % (len(outs), n))
        for i in range(n):
            s = self.shapes[i]
            if len(outs[i]) != s[0] * s[1] * s[2]:
                raise OSError("output %d has %d values, config shape %dx%dx%d needs %d"
                              % (i, len(outs[i]), s[0], s[1], s[2], s[0] * s[1] * s[2]))
        return outs[:n]

    def close(self):
        """Legacy: deinit the task. CanMV releases: deinit (safe after init_yolo2).
        feat/kpu: nothing (the model stays loaded for the next session, see _KEPT)."""
        try:
            if self.api == API_LEGACY and self.task is not None:
                self.k.deinit(self.task)
            elif self.api == API_OLD and self.k is not None:
                self.k.deinit()
        except Exception:
            pass
        self.task = None


def decode_boxes(cfg, outs):
    d = cfg["decoder"]
    if d["type"] == "raw":
        return []
    return decoders.decode(d["type"], outs[0], cfg["outputs"][0]["shape"], d)
