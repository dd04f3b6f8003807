# Test hooks shared by the stand-ins: where the line's bytes come from and go to, and the
# peak of live GC-heap data at the points where the firmware allocates (the stand-ins call
# sample() there: after a collection, so garbage not yet collected does not count).
import gc

LINE_IN = None       # path of the bytes the host sends (the UART's receive side)
LINE_OUT = None      # path the board's UART writes go to
JPEG_DIR = None      # decoded RGB565 pixels of each test JPEG: DIR/<crc32 %08x>.rgb565
SENSOR_SEED = 1      # live mode: the camera's frames are a function of this and the frame number
GRAY_TABLE = None    # path of the firmware's RGB565 -> GRAYSCALE table (image.to_grayscale)
peak = 0


def sample():
    global peak
    gc.collect()
    a = gc.mem_alloc()
    if a > peak:
        peak = a
