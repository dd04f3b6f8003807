# The compressed payload formats of serve mode (docs/protocol.md): a JPEG received into the
# session's JPEG buffer and decoded by the firmware into the image place, and rgb565z
# segments inflated straight into it. Functions of the session (device/server.py Server),
# whose big buffers they use (docs/design.md "Board memory"). MicroPython 1.11 dialect.
import gc

try:
    import protocol
except ImportError:
    from device import protocol
try:
    import zinflate
except ImportError:
    from device import zinflate
try:
    from kpu_model import err_text
except ImportError:
    from device.kpu_model import err_text
try:
    from pixel_views import fill_rows, rgb565_view
except ImportError:
    from device.pixel_views import fill_rows, rgb565_view

P = protocol

MAX_JPEG = 262144
JPEG_STEP = 8192    # the session's JPEG buffer grows in these steps (jpeg_buffer)
# picojpeg.c getChar: once the input runs out the decoder reads a fake EOI, FF D9 FF D9 ...
JPEG_PAST_END = b"\xff\xd9" * 128


def formats(srv):
    """INFO `formats`: the payload formats this board takes for the session's model."""
    if srv.gray:
        return ["gray8"]
    if zinflate.available():
        return ["rgb565", "jpeg", "rgb565z"]
    return ["rgb565", "jpeg"]


# ------------------------------------------------------------------ JPEG
def begin_jpeg(srv, t):
    if t.total <= 0 or t.total > MAX_JPEG:
        t.fail = (P.E_SIZE, "JPEG of %d bytes (max %d)" % (t.total, MAX_JPEG))
        return
    try:
        srv.raw_image()        # the place the decode takes, below the buffer
        jpeg_buffer(srv, t.total)
    except MemoryError as e:
        t.fail = (P.E_NO_MEMORY, "JPEG buffer: " + err_text(e))


def jpeg_buffer(srv, n):
    """The JPEG buffer for an image of n bytes and the 2-byte end mark, at IMAGE_BEGIN: the
    one remake() made, or one of the session's size, grown (by JPEG_STEP, so rarely) when n
    needs it, so that every image's buffer takes the same hole."""
    if srv.jpeg is not None and len(srv.jpeg) >= n + 2:
        return
    srv.jpeg = None
    srv.jpeg_w = None
    gc.collect()
    cap = (n + 2 + JPEG_STEP - 1) // JPEG_STEP * JPEG_STEP
    make_jpeg_buffer(srv, cap if cap > srv.jpeg_cap else srv.jpeg_cap)


def make_jpeg_buffer(srv, cap):
    """A JPEG buffer of cap bytes. image.Image(data, from_bytes=True) takes bytes only
    (py_image.c: mp_obj_is_str_or_bytes): the JPEG is received straight into a bytes object
    through a writable uctypes view, never copied; a bytearray where uctypes is missing."""
    srv.jpeg_cap = cap
    buf = bytes(cap)
    view = rgb565_view(buf, cap)
    if view is None:
        buf = bytearray(cap)
        view = buf
    srv.jpeg = buf
    srv.jpeg_w = view


def end_jpeg(srv, n):
    """Make the buffer past the JPEG's n bytes read as the end of the input does: the
    firmware decodes the whole bytes object, and picojpeg reads FF D9 FF D9 ... past the
    end of its input (MaixPy-v1/CanMV omv/img/picojpeg.c: getChar), which its marker
    reader never consumes. So the JPEG decodes as if the buffer ended with it, a complete
    one and a truncated one alike (exactly so for reads that stay within the buffer)."""
    w = srv.jpeg_w
    cap = len(srv.jpeg)
    k = n
    while k < cap:
        m = cap - k if cap - k < len(JPEG_PAST_END) else len(JPEG_PAST_END)
        w[k:k + m] = JPEG_PAST_END if m == len(JPEG_PAST_END) else JPEG_PAST_END[:m]
        k += m


def decode_jpeg(srv, t):
    """Decode the received JPEG into the image place; the decoded Image becomes the place.
    The Image that held it is released first; then the decode's pixels (picojpeg_util.c:
    pjpeg_load_from_file xallocs them before anything else) and its pix_to_ai() planes
    are the first big blocks allocated, so with the GC's first fit they land where the
    old pixels and planes were, image after image. None after an ERROR (the place made
    again). The JPEG buffer is dropped after the decode: from there to the next image's
    IMAGE_BEGIN (jpeg_buffer makes it again, the same size) it is idle, and the KPU's list
    of output floats and the decoder, the serve loop's peak, take its room."""
    import image
    end_jpeg(srv, t.total)
    data = srv.jpeg if isinstance(srv.jpeg, bytes) else bytes(srv.jpeg)
    srv.img = None
    srv.view = None
    gc.collect()
    try:
        img = image.Image(data, from_bytes=True)
    except MemoryError:
        raise
    except Exception as e:
        img = None
        text = "JPEG decode failed: " + err_text(e)
    finally:
        data = None
        srv.jpeg = None
        srv.jpeg_w = None
    if img is None:
        return jpeg_failed(srv, t, P.E_JPEG, text)
    if img.width() == 0 or img.height() == 0:
        # the firmware swallows decode errors: "Failed loading source image!" and a 0x0
        # image (MaixPy-v1 omv/img/imlib.c: imlib_load_image)
        return jpeg_failed(srv, t, P.E_JPEG, "JPEG decode failed: the firmware made a "
                           "0x0 image")
    img.pix_to_ai()
    if img.width() != srv.w or img.height() != srv.h:
        text = "JPEG is %dx%d, model input is %dx%d" % (img.width(), img.height(),
                                                        srv.w, srv.h)
        img = None
        return jpeg_failed(srv, t, P.E_SIZE, text)
    srv.img = img
    srv.view = rgb565_view(img, 2 * srv.w * srv.h)
    return img


def jpeg_failed(srv, t, code, text):
    """ERROR for the image; the RGB565 Image takes the image place again (None)."""
    srv.error(code, t.id, text)
    try:
        srv.raw_image()
    except MemoryError:
        pass
    return None


# ------------------------------------------------------------------ rgb565z
def begin_rgb565z(srv, t):
    """A new Inflater for each image (the host deflates each with a new compressor): the
    one remake() made after the previous image's KPU run, else one made here; dropped at the
    image's last byte, so that its window and source buffer are free while the KPU's output
    list lives (the serve loop's peak)."""
    if not zinflate.available():
        t.fail = (P.E_FORMAT, "rgb565z: this firmware has no uzlib.DecompIO")
    elif t.w != srv.w or t.h != srv.h or t.total <= 0:
        t.fail = (P.E_SIZE, "rgb565z image %dx%d (%d bytes), model input is %dx%d"
                  % (t.w, t.h, t.total, srv.w, srv.h))
    else:
        try:
            srv.raw_image()
            if srv.z is None:
                gc.collect()
                srv.z = new_inflater(srv)
            t.z = srv.z
            srv.z = None
        except MemoryError as e:
            t.fail = (P.E_NO_MEMORY, "rgb565z image buffer or inflater: " + err_text(e))


def remake(srv, fmt):
    """Right after the KPU's outputs are packed and its float list collected: the buffer
    the next image of format `fmt` takes, made again at once (the JPEG buffer, the same
    size; a new Inflater), before the decoder and the RESULT allocate anything that lives
    on: the largest hole of the image's life is there then, the KPU's list's. A MemoryError
    leaves it to the next IMAGE_BEGIN."""
    try:
        if fmt == P.FMT_JPEG and srv.jpeg is None and srv.jpeg_cap:
            make_jpeg_buffer(srv, srv.jpeg_cap)
        elif fmt == P.FMT_RGB565Z and srv.z is None:
            srv.z = new_inflater(srv)
    except MemoryError:
        pass


def new_inflater(srv):
    """An Inflater for one rgb565z image of the session's model input."""
    return zinflate.Inflater(2 * srv.w * srv.h, srv.chunk, P.Z_WBITS)


def drop(srv):
    """Give up the buffer remake() made for the next image: its IMAGE_BEGIN makes it."""
    srv.jpeg = None
    srv.jpeg_w = None
    srv.z = None


def inflate(srv, t, data):
    """One rgb565z segment straight into the Image (or, without uctypes, through a row
    buffer and the slice path)."""
    z = t.z
    n = z.next_len()
    try:
        if srv.view is not None:
            z.segment(data, memoryview(srv.view)[z.done:z.done + n])
        else:
            off = z.done
            buf = bytearray(n)
            z.segment(data, buf)
            fill_rows(srv.img, srv.w, off, buf)
    except zinflate.InflateError as e:
        t.fail = (P.E_INFLATE, "image %d: %s" % (t.id, e))
        t.z = None

