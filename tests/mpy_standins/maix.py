# CanMV feat/kpu `maix.KPU` stand-in (components/micropython/port/src/maix/maix_kpu.c on
# kendryte/canmv branch feat/kpu): load(path or flash offset, size=), run(img) on the image's
# pix_ai buffer, get_outputs(index) -> a list of floats (index read only from a positional
# argument: a keyword is ignored and output 0 comes back), deinit().
# The outputs are a fixed function of the KPU input bytes (kpu_outputs), not a network: the
# host recomputes them to check what the board decodes and sends.
import standin

SHAPES = []          # the test sets the model's output shapes [(C, H, W)]


def kpu_outputs(ai, n_in, shape, k):
    """Output k: value i = (ai[(i * 7919 + 31 * k) % n_in] - 160) / 16 (exact in float32)."""
    n = shape[0] * shape[1] * shape[2]
    return [(ai[(i * 7919 + 31 * k) % n_in] - 160) / 16.0 for i in range(n)]


class KPU:
    def __init__(self):
        self._outs = None
        self._loaded = False

    def load(self, model, size=0):
        if isinstance(model, str):
            open(model).close()          # OSError as the firmware's file open
        elif model <= 0 or size <= 0:
            raise ValueError("offset and size must be > 0")
        self._loaded = True

    def run(self, img):
        if not self._loaded:
            raise RuntimeError("kmodel not loaded")
        if img.ai is None:
            raise ValueError("image has no pix_ai: call pix_to_ai()")
        n_in = img.w * img.h * 3
        self._outs = [kpu_outputs(img.ai, n_in, s, k) for k, s in enumerate(SHAPES)]
        standin.sample()

    def get_outputs(self, *args, **kwargs):
        index = args[0] if args else 0
        return self._outs[index]

    def deinit(self):
        self._outs = None
        self._loaded = False
