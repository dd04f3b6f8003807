# CanMV feat/kpu `maix.KPU` stand-in (components/micropython/port/src/maix/maix_kpu.c on
# kendryte/canmv branch feat/kpu): load(path or flash offset, size=), run(img) on the image's
# pix_ai buffer, get_outputs(index) -> a list of floats (index read only from a positional
# argument: a keyword is ignored and output 0 comes back), deinit().
# The outputs are a fixed function of the KPU input bytes (kpu_outputs), not a network: the
# host recomputes them to check what the board decodes and sends.
from array import array
import standin

SHAPES = []          # the test sets the model's output shapes [(C, H, W)]
CHANNELS = 3         # and its input's channels: the KPU reads CHANNELS * w * h bytes of pix_ai


def kpu_outputs(ai, n_in, shape, k, out=None):
    """Output k as array('f'): value i = (ai[(i * 7919 + 31 * k) % n_in] - 224) / 16 (exact
    in float32), written into `out` (or a new array)."""
    n = shape[0] * shape[1] * shape[2]
    if out is None:
        out = array("f", range(n))
    for i in range(n):
        out[i] = (ai[(i * 7919 + 31 * k) % n_in] - 224) / 16.0
    return out


class KPU:
    def __init__(self):
        self._outs = None
        self._loaded = False

    def load(self, model, size=0):
        if isinstance(model, str):
            open(model).close()          # OSError as the firmware's file open
        elif model <= 0 or size <= 0:
            raise ValueError("offset and size must be > 0")
        # the KPU's output buffers are C memory the nncase runtime allocates once per loaded
        # model, not the GC heap: here float32 arrays made at load and rewritten by run() (a
        # slight over-estimate of the GC heap use, constant over the session)
        self._bufs = [array("f", range(s[0] * s[1] * s[2])) for s in SHAPES]
        self._loaded = True

    def run(self, img):
        if not self._loaded:
            raise RuntimeError("kmodel not loaded")
        if img.ai is None:
            raise ValueError("image has no pix_ai: call pix_to_ai()")
        n_in = img.w * img.h * CHANNELS
        for k, s in enumerate(SHAPES):
            kpu_outputs(img.ai, n_in, s, k, self._bufs[k])
        self._outs = self._bufs
        standin.sample()

    def get_outputs(self, *args, **kwargs):
        # maix_kpu.c k210_kpu_get_outputs: OSError before load/run; the index only from a
        # positional int; mp_obj_new_list(output_size) then one float object per value
        if self._outs is None:
            raise OSError("Please load/run kmodel before")
        index = args[0] if args and isinstance(args[0], int) else 0
        a = self._outs[index]
        out = [None] * len(a)
        for i in range(len(a)):
            out[i] = a[i]
        standin.sample()
        return out

    def deinit(self):
        self._outs = None
        self._loaded = False
