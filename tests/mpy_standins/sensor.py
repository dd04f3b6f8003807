# sensor stand-in (MaixPy-v1 components/micropython/port/src/omv/py/py_sensor.c): constants
# from omv/include/sensor.h (PIXFORMAT_RGB565 = 2, GRAYSCALE = 4, JPEG = 5, FRAMESIZE_QVGA =
# 10); set_windowing needs w, h >= 8 and multiples of 8; snapshot() a new RGB565 (GRAYSCALE)
# image whose pixels are a function of standin.SENSOR_SEED and the frame number (the host
# recomputes them), its AI planes (its one plane) filled as the DVP does.
import image
import standin

RGB565 = 2
GRAYSCALE = 4
JPEG = 5
QVGA = 10
_w = 320
_h = 240
_frame = 0
_fmt = RGB565


def reset():
    global _w, _h, _frame, _fmt
    _w, _h, _frame, _fmt = 320, 240, 0, RGB565


def set_pixformat(fmt):
    global _fmt
    if fmt not in (RGB565, GRAYSCALE):
        raise ValueError("pixformat")
    _fmt = fmt


def set_framesize(size):
    global _w, _h
    if size != QVGA:
        raise ValueError("framesize: only QVGA here")
    _w, _h = 320, 240


def set_windowing(roi):
    global _w, _h
    w, h = roi[-2], roi[-1]
    if w < 8 or h < 8 or w % 8 or h % 8:
        raise ValueError("windowing: w, h >= 8 and multiples of 8")
    _w, _h = w, h


def skip_frames(n=0, time=0):
    pass


def frame_pixels(seed, frame, n):
    """Byte i of frame f: (i * 131 + f * 17 + seed * 7 + (i >> 5)) & 0xFF."""
    return bytes([(i * 131 + frame * 17 + seed * 7 + (i >> 5)) & 0xFF for i in range(n)])


def snapshot():
    global _frame
    if _fmt == GRAYSCALE:
        # omv/sensor.c sensor_snapshot, GRAYSCALE: the DVP writes the sensor's Y into pix_ai
        # and the frame's pixels are that buffer (image->pixels = image->pix_ai)
        img = image._new_gray(_w, _h)
        img[0:_w * _h] = list(frame_pixels(standin.SENSOR_SEED, _frame, _w * _h))
        img.ai = img
        _frame += 1
        return img
    import uctypes
    img = image.Image(size=(_w, _h))
    uctypes.bytearray_at(uctypes.addressof(img), 2 * _w * _h)[:] = \
        frame_pixels(standin.SENSOR_SEED, _frame, 2 * _w * _h)
    # the DVP writes the AI planes beside the RGB565 frame (omv/sensor.c dvp_set_ai_addr;
    # py_sensor.c: the snapshot's pix_ai is MAIN_FB()->pix_ai): no pix_to_ai() needed.
    # The planes here follow pix_to_ai's rule (the DVP's own rounding is not in the source).
    img.pix_to_ai()
    _frame += 1
    return img
