"""`sensor`: the camera, fed from an image folder (`--sensor-dir`).

Frames cycle through the folder's images (sorted by name). Each is scaled to cover the
configured frame size, centre-cropped, then cropped to the window, and arrives as RGB565
with the KPU buffer already filled, as the DVP fills both on the board. Without a folder
the camera sees a fixed colour test pattern.

GRAYSCALE (`set_pixformat(sensor.GRAYSCALE)`): on the board the DVP takes the sensor's own Y
(omv/sensor.c: sensor_set_pixformat, DVP_CFG_Y_FORMAT) into pix_ai and the frame's pixels are
that buffer (sensor_snapshot: image->pixels = image->pix_ai), computed by the camera chip.
Here the frame is the RGB565 frame's firmware luminance (`to_grayscale()`), the value a gray8
payload of the same picture carries: a real sensor's Y differs by its own rounding.
"""
import os

import numpy as np
from PIL import Image as PILImage

from host.vboard.image import Image
from host.vboard.shims.base import new_module

FRAMESIZES = {"QQVGA": (160, 120), "QVGA": (320, 240), "VGA": (640, 480),
              "B64X64": (64, 64), "B128X128": (128, 128), "B240X240": (240, 240),
              "B320X320": (320, 320), "CIF": (352, 288), "QCIF": (176, 144)}
# sipeed/MaixPy-v1 omv/include/sensor.h: pixformat_t (py_sensor.c exports these)
RGB565, YUV422, GRAYSCALE, JPEG = 2, 3, 4, 5
_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm")


class _Camera:
    def __init__(self, board):
        self.board = board
        self.framesize = FRAMESIZES["QVGA"]
        self.window = None
        self.pixformat = RGB565
        self.hmirror = self.vflip = False
        self.frame = 0
        folder = board.sensor_dir
        self.files = sorted(os.path.join(folder, n) for n in os.listdir(folder)
                            if n.lower().endswith(_EXTS)) if folder else []

    def size(self):
        if self.window is None:
            return self.framesize
        return self.window[-2:]

    def capture(self):
        fw, fh = self.framesize
        if self.files:
            path = self.files[self.frame % len(self.files)]
            with PILImage.open(path) as src:
                pil = src.convert("RGB")
        else:
            pil = _test_pattern(fw, fh)
        self.frame += 1
        scale = max(fw / pil.width, fh / pil.height)
        pil = pil.resize((max(fw, round(pil.width * scale)), max(fh, round(pil.height * scale))),
                         PILImage.BILINEAR)
        left, top = (pil.width - fw) // 2, (pil.height - fh) // 2
        pil = pil.crop((left, top, left + fw, top + fh))
        if self.window is not None:
            x, y, w, h = self.window
            pil = pil.crop((x, y, x + w, y + h))
        if self.hmirror:
            pil = pil.transpose(PILImage.FLIP_LEFT_RIGHT)
        if self.vflip:
            pil = pil.transpose(PILImage.FLIP_TOP_BOTTOM)
        img = Image.from_rgb(np.asarray(pil))
        if self.pixformat == GRAYSCALE:
            img.to_grayscale()
        img.pix_to_ai()
        return img


def _test_pattern(w, h):
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None].repeat(w, 1)
    rgb = np.stack([x, y, 255 - x], axis=-1).astype(np.uint8)
    return PILImage.fromarray(rgb, "RGB")


def build(board):
    """sipeed/MaixPy-v1 (and kendryte/canmv) components/micropython/port/src/omv/py/
    py_sensor.c: globals_dict_table; each function names its C function."""
    def camera():
        if board.session.sensor is None:
            raise RuntimeError("Sensor Timeout! (call sensor.reset() first)")
        return board.session.sensor

    def reset(*args, **kwargs):
        # py_sensor.c: py_sensor_reset (the probe's find line is omv/sensor.c's)
        board.session.sensor = _Camera(board)
        board.write(b"[MAIXPY]: find ov2640\r\n")

    def set_pixformat(fmt):
        # py_sensor.c: py_sensor_set_pixformat
        camera().pixformat = fmt

    def set_framesize(size):
        # py_sensor.c: py_sensor_set_framesize (the vboard's frame sizes are (w, h) tuples,
        # the firmware's are framesize_t numbers)
        cam = camera()
        cam.framesize = size
        cam.window = None

    def set_windowing(roi):
        # sipeed/MaixPy-v1 omv/py/py_sensor.c: py_sensor_set_windowing -> True
        cam = camera()
        fw, fh = cam.framesize
        if len(roi) == 4:
            x, y, w, h = (int(v) for v in roi)
        elif len(roi) == 2:
            w, h = (int(v) for v in roi)
            x, y = fw // 2 - w // 2, fh // 2 - h // 2
        else:
            raise ValueError("The tuple/list must either be (x, y, w, h) or (w, h)")
        if w < 8 or h < 8:
            raise ValueError("The selected window is too small")
        if x < 0 or x + w > fw or y < 0 or y + h > fh:
            raise ValueError("The selected window is outside the bounds of the frame")
        if w % 8 or h % 8:
            raise ValueError("value must be multiple of 8")
        cam.window = (x, y, w, h)
        return True

    def snapshot():
        # py_sensor.c: py_sensor_snapshot (RGB565 or GRAYSCALE and its AI buffer, as the DVP
        # fills both)
        if camera().pixformat not in (RGB565, GRAYSCALE):
            raise ValueError("vboard: only RGB565 and GRAYSCALE camera frames are emulated")
        return camera().capture()

    def skip_frames(n=10, time=None):
        # py_sensor.c: py_sensor_skip_frames
        camera()

    def set_hmirror(on):
        # py_sensor.c: py_sensor_set_hmirror
        camera().hmirror = bool(on)

    def set_vflip(on):
        # py_sensor.c: py_sensor_set_vflip
        camera().vflip = bool(on)

    def width():
        # py_sensor.c: py_sensor_width / py_sensor_height
        return camera().size()[0]

    def height():
        return camera().size()[1]

    def noop(*args, **kwargs):
        # py_sensor.c: the image-quality setters (no effect on the virtual camera)
        camera()

    m = new_module("sensor", reset=reset, set_pixformat=set_pixformat,
                   set_framesize=set_framesize, set_windowing=set_windowing,
                   snapshot=snapshot, skip_frames=skip_frames, set_hmirror=set_hmirror,
                   set_vflip=set_vflip, width=width, height=height, run=noop,
                   set_brightness=noop, set_contrast=noop, set_saturation=noop,
                   set_auto_gain=noop, set_auto_whitebal=noop, set_auto_exposure=noop,
                   get_id=lambda: 0x2642, RGB565=RGB565, YUV422=YUV422,
                   GRAYSCALE=GRAYSCALE, JPEG=JPEG)
    m.__dict__.update(FRAMESIZES)
    return m
