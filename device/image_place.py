# What the KPU gets in serve mode beside RGB565: the GRAYSCALE image place of a 1-channel
# model and its gray8 payloads (docs/protocol.md "gray8"), and the CRCs of the pixels the
# KPU ran on, for both kinds of place. MicroPython 1.11 dialect.
try:
    import protocol
except ImportError:
    from device import protocol
try:
    from kpu_model import err_text
except ImportError:
    from device.kpu_model import err_text
try:
    from pixel_views import expansion_tables, pix_ai_view
except ImportError:
    from device.pixel_views import expansion_tables, pix_ai_view

P = protocol


def gray_image(w, h):
    """A GRAYSCALE Image of w x h. image.Image(size=) makes RGB565 only (sipeed/MaixPy-v1
    omv/py/py_image.c: py_image_load_image); to_grayscale() (copy=False) turns it GRAYSCALE
    in place (py_image_to_grayscale: same pixel buffer, bpp 1), and its pix_to_ai() then
    copies the w*h bytes as the KPU input (py_image_pix_to_ai)."""
    import image
    return image.Image(size=(w, h)).to_grayscale()


def begin(srv, t):
    """IMAGE_BEGIN `t` on a grayscale model's board, or a gray8 image on an RGB model's:
    t.fail when the image does not fit the model, else the image place made (once)."""
    if not srv.gray:
        t.fail = (P.E_FORMAT, "gray8 image, but the model's input is RGB (3 channels): send "
                  "rgb565, rgb565z or jpeg")
    elif t.fmt != P.FMT_GRAY8:
        t.fail = (P.E_FORMAT, "%s image, but the model's input is grayscale (1 channel): send "
                  "gray8" % P.FORMAT_NAMES.get(t.fmt, str(t.fmt)))
    elif t.w != srv.w or t.h != srv.h or t.total != t.w * t.h:
        t.fail = (P.E_SIZE, "gray8 image %dx%d (%d bytes), model input is %dx%d (%d bytes)"
                  % (t.w, t.h, t.total, srv.w, srv.h, srv.w * srv.h))
    else:
        try:
            srv.raw_image()
        except MemoryError as e:
            t.fail = (P.E_NO_MEMORY, "GRAYSCALE image buffer: " + err_text(e))


def kpu_crcs(srv, img, view, want_input):
    """(pixel_crc, input_crc, crc_source) of the Image the KPU ran on: pixel_crc over its
    pixel buffer (RGB565 big-endian, or the w*h gray bytes); input_crc over the firmware's
    own pix_ai when it can be read (config input_crc auto), else recomputed from the pixels
    with the firmware's rule (RGB565: planar expansion; GRAYSCALE: pix_to_ai copies them)."""
    pixel_crc = 0
    try:
        pixel_crc = P.crc32(view if view is not None else img)
    except Exception:
        pass
    if not want_input or srv.crc_mode == "off":
        return pixel_crc, 0, P.CRC_NONE
    planes = 1 if srv.gray else 3
    ai = pix_ai_view(img, srv.w, srv.h, planes) if srv.crc_mode == "auto" else None
    if ai is not None:
        return pixel_crc, P.crc32(ai), P.CRC_PIX_AI
    px = view
    if px is None:
        try:
            px = bytes(img)
        except Exception:
            return pixel_crc, 0, P.CRC_NONE
    if srv.gray:
        return pixel_crc, P.crc32(px), P.CRC_LUT
    if srv.rowbuf is None:
        srv.rowbuf = bytearray(srv.w)
    return pixel_crc, P.planar_crc(px, srv.w, srv.h, srv.rowbuf, expansion_tables()), P.CRC_LUT
