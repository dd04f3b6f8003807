# k210-deploy serial protocol: one frame codec shared by the board (flat
# module `protocol`) and the host (`device.protocol`). MicroPython 1.11
# dialect: no f-strings, no bytes.hex/fromhex, int.from_bytes byteorder
# positional. The wire format, flow control and message table are in
# docs/protocol.md; keep the two in step.
#
# Frame (all integers little-endian):
#   0  2  sync  A5 5A
#   2  1  version (VERSION)
#   3  1  type
#   4  2  seq (uint16, per sender, wraps)
#   6  4  payload length (uint32, <= the receiver's max_payload)
#  10  2  header check: crc32(bytes 0..9) & 0xFFFF
#  12  n  payload
#  12+n 4 crc32(bytes 0 .. 12+n-1)
try:
    import ubinascii as _binascii
except ImportError:
    import binascii as _binascii
try:
    import ustruct as struct
except ImportError:
    import struct
try:
    import ujson as json
except ImportError:
    import json
try:
    from array import array as _array
except ImportError:  # pragma: no cover
    _array = None
import sys

VERSION = 1
SYNC = b"\xa5\x5a"
SYNC0 = 0xA5
SYNC1 = 0x5A
HDR_LEN = 12
CRC_LEN = 4
OVERHEAD = HDR_LEN + CRC_LEN
MAX_PAYLOAD = 1 << 20          # host parser bound (1 MiB)
DEVICE_MAX_PAYLOAD = 8192      # board parser bound (image chunks + control)
DEFAULT_CHUNK = 4096           # IMAGE_DATA bytes per frame (before the 8-byte prefix)
WINDOW_MARGIN = 64             # read_buf_len - window: ring-buffer slack
STALE_MS = 250                 # a partial frame idle this long (+ its line time) is dropped

# message types
T_HELLO = 0x01        # host -> board  JSON {"proto": 1, ...}
T_INFO = 0x02         # board -> host  JSON (see docs/protocol.md)
T_ACK = 0x03          # board -> host  <I consumed bytes since HELLO (mod 2**32)
T_ERROR = 0x04        # both ways      <IH ref, code + UTF-8 reason
T_EXIT = 0x05         # host -> board  leave serve mode, back to the REPL
T_BYE = 0x06          # board -> host  reply to EXIT (empty)
T_IMAGE_BEGIN = 0x10  # host -> board  <IBBHHI id, format, flags, w, h, total bytes
T_IMAGE_DATA = 0x11   # host -> board  <II id, offset + bytes
T_RESULT = 0x12       # board -> host  see pack_result
T_RESEND = 0x13       # host -> board  <I image id: send that image's RESULT again
T_LOG = 0x20          # board -> host  UTF-8 text (diagnostics)

TYPE_NAMES = {
    T_HELLO: "HELLO", T_INFO: "INFO", T_ACK: "ACK", T_ERROR: "ERROR",
    T_EXIT: "EXIT", T_BYE: "BYE", T_IMAGE_BEGIN: "IMAGE_BEGIN",
    T_IMAGE_DATA: "IMAGE_DATA", T_RESULT: "RESULT", T_RESEND: "RESEND", T_LOG: "LOG",
}

# image payload formats
FMT_RGB565 = 0   # raw RGB565, big-endian pixels (as the firmware stores them), row-major
FMT_JPEG = 1     # JPEG file bytes; the board decodes to RGB565
FMT_RGB565Z = 2  # FMT_RGB565 bytes as raw deflate, one sync-flushed segment per IMAGE_DATA
FMT_GRAY8 = 3    # 8-bit luminance, row-major, w*h bytes: a GRAYSCALE image (1-channel models)
FORMAT_NAMES = {FMT_RGB565: "rgb565", FMT_JPEG: "jpeg", FMT_RGB565Z: "rgb565z",
                FMT_GRAY8: "gray8"}
# rgb565z window: 2**Z_WBITS bytes of history (the board's DecompIO(stream, -Z_WBITS) ring).
# Raw deflate with the window given explicitly: MicroPython 1.11's DecompIO(stream, 0) takes
# 1 << CINFO (128 bytes for a 32 KiB zlib stream) from a zlib header as its window.
Z_WBITS = 14    # 16 KiB: the window by measurement (docs/protocol.md, "rgb565z")

# IMAGE_BEGIN flags
F_INPUT_CRC = 0x01   # compute the CRC32 of the KPU input bytes
F_NO_BOXES = 0x02    # skip the board-side decoder

# RESULT flags
R_DECODE_FAILED = 0x01   # the board decoder raised: boxes empty, see the LOG frame before
R_PIXELS_SLOW = 0x02     # RGB565 reached the Image through the slow slice path (no uctypes)
R_MASK = 0x04            # a segment mask follows the box records: <HH h, w + h*w uint8 ids

# RESULT crc_source
CRC_NONE = 0     # not computed
CRC_PIX_AI = 1   # read from the firmware's own KPU input buffer (pix_ai)
CRC_LUT = 2      # recomputed in Python from the RGB565 pixels with the firmware rule

# error codes
E_VERSION = 1
E_UNKNOWN_TYPE = 2
E_BAD_PAYLOAD = 3
E_STATE = 4
E_SIZE = 5
E_FORMAT = 6
E_JPEG = 7
E_MODEL_LOAD = 8
E_KPU_RUN = 9
E_NO_MEMORY = 10
E_INTERNAL = 11
E_DECODER = 12
E_CONFIG = 13
E_BUSY = 14
E_CRC = 15          # NACK: the board dropped bytes that failed a frame check
E_NO_RESULT = 16    # RESEND for an image whose RESULT the board does not hold
E_INFLATE = 17      # an rgb565z segment did not inflate to its pixels (corrupt or cut short)
E_NO_SESSION = 18   # a frame before any HELLO: the board (re)started serve mode since
ERROR_NAMES = {
    E_VERSION: "version", E_UNKNOWN_TYPE: "unknown_type", E_BAD_PAYLOAD: "bad_payload",
    E_STATE: "state", E_SIZE: "size", E_FORMAT: "format", E_JPEG: "jpeg",
    E_MODEL_LOAD: "model_load", E_KPU_RUN: "kpu_run", E_NO_MEMORY: "no_memory",
    E_INTERNAL: "internal", E_DECODER: "decoder", E_CONFIG: "config", E_BUSY: "busy",
    E_CRC: "crc", E_NO_RESULT: "no_result", E_INFLATE: "inflate",
    E_NO_SESSION: "no_session",
}
# Errors about the transfer rather than the image: the host sends the image again.
TRANSPORT_ERRORS = (E_BAD_PAYLOAD, E_STATE, E_CRC, E_NO_RESULT, E_INFLATE)

# INFO "features": protocol extensions this board speaks (docs/protocol.md, "Recovery")
FEATURES = ["seq_ack", "resend", "nack", "dedup", "session", "gray8", "mask"]

_LITTLE = sys.byteorder == "little"


class ProtocolError(Exception):
    pass


def crc32(data, value=0):
    return _binascii.crc32(data, value) & 0xFFFFFFFF


# Integer fields: the board's ustruct (MicroPython 1.11) packs an out-of-range value silently
# truncated (70000 as "H" -> 4464), CPython's struct raises. Both sides refuse it here, with
# the same ValueError, before packing. Counters that wrap by design are masked by the caller.
U8 = 0xFF
U16 = 0xFFFF
U32 = 0xFFFFFFFF


def _u(value, limit, name):
    if not 0 <= value <= limit:
        raise ValueError("%s %d out of range 0..%d" % (name, value, limit))
    return value


# ------------------------------------------------------------------ framing
def header(ftype, seq, length):
    """The 12 header bytes of a frame carrying `length` payload bytes."""
    h = struct.pack("<BBBBHI", SYNC0, SYNC1, VERSION, _u(ftype, U8, "frame type"), seq & 0xFFFF,
                    _u(length, U32, "payload length"))
    return h + struct.pack("<H", crc32(h) & 0xFFFF)


def frame_parts(ftype, seq, parts):
    """(header, trailer) for a payload given as a list of buffers; the sender
    writes header, each part, trailer: no concatenation of large payloads."""
    n = 0
    for p in parts:
        n += len(p)
    h = header(ftype, seq, n)
    c = crc32(h)
    for p in parts:
        c = crc32(p, c)
    return h, struct.pack("<I", c)


def encode(ftype, seq, payload=b""):
    """One complete frame as bytes."""
    h, t = frame_parts(ftype, seq, [payload])
    return h + bytes(payload) + t


def send(write, ftype, seq, parts):
    """Write one frame through write(buf) (e.g. uart.write); returns its size."""
    h, t = frame_parts(ftype, seq, parts)
    write(h)
    n = HDR_LEN + CRC_LEN
    for p in parts:
        if len(p):
            write(p)
            n += len(p)
    write(t)
    return n


class Parser:
    """Incremental frame parser with a fixed, preallocated buffer.

    feed(data) -> bytes accepted (the rest must be fed again after next()
    drained frames); or receive straight into free() and commit(n).
    next() -> (type, seq, payload) or None; payload is a memoryview into the
    parser's buffer, valid until the next feed()/commit(). The version of the
    frame just returned is in .version.

    Resync: bytes before a sync marker are skipped (counted in .garbage); a
    sync whose header check, version range or length bound fails is skipped
    at once; a frame whose CRC fails is dropped and scanning resumes one byte
    after its sync, so a real frame hidden behind a false sync is still
    found. Buffering is bounded by max_payload + 16 bytes. A false
    sync with a valid header check (p ~ 2**-32 per garbage byte) waits for at
    most its claimed length; a receiver that times out calls rescan(). The buffer holds one
    frame of max_payload (on the board it is GC heap): a partial frame is moved to its front
    to make room (_compact)."""

    def __init__(self, max_payload=MAX_PAYLOAD):
        self.max_payload = max_payload
        self.cap = max_payload + OVERHEAD
        self.buf = bytearray(self.cap)
        self.mv = memoryview(self.buf)
        self.start = 0
        self.end = 0
        self.version = VERSION
        self.garbage = 0
        self.bad_header = 0
        self.bad_crc = 0
        self.oversize = 0
        self.frames = 0
        self.truncated = 0
        self.want = 0       # > 0: a candidate frame at the head waits for this many bytes

    def reset(self):
        self.start = 0
        self.end = 0
        self.want = 0

    def dropped(self):
        """Frame candidates dropped so far (bad header check, bad CRC, over the bound)."""
        return self.bad_header + self.bad_crc + self.oversize + self.truncated

    def buffered(self):
        return self.end - self.start

    def _compact(self):
        s = self.start
        if s == 0:
            return
        n = self.end - s
        k = 0
        while k < n:
            # pieces no longer than the gap: source and destination never overlap (MicroPython
            # 1.11 copies a slice with memcpy)
            m = n - k if n - k < s else s
            self.mv[k:k + m] = self.mv[s + k:s + k + m]
            k += m
        self.start = 0
        self.end = n

    def free(self):
        """Writable memoryview of the free space (after compaction)."""
        if self.end == self.cap or self.start > (self.cap >> 1):
            self._compact()
        return self.mv[self.end:self.cap]

    def commit(self, n):
        if n:
            self.end += n

    def feed(self, data):
        room = self.free()
        k = len(data)
        if k > len(room):
            k = len(room)
        if k:
            room[0:k] = data[0:k] if len(data) != k else data
            self.end += k
        return k

    def next(self):
        buf = self.buf
        while True:
            s = self.start
            e = self.end
            # find the sync marker
            i = s
            while i < e - 1:
                if buf[i] == SYNC0 and buf[i + 1] == SYNC1:
                    break
                i += 1
            else:
                # keep a trailing first sync byte
                if e > s and buf[e - 1] == SYNC0:
                    i = e - 1
                else:
                    i = e
                self.garbage += i - s
                self.start = i
                if self.start == self.end:
                    self.start = self.end = 0
                self.want = 0
                return None
            if i > s:
                self.garbage += i - s
                self.start = i
            if e - i < HDR_LEN:
                self.want = HDR_LEN
                return None
            ver = buf[i + 2]
            n = buf[i + 6] | (buf[i + 7] << 8) | (buf[i + 8] << 16) | (buf[i + 9] << 24)
            hc = buf[i + 10] | (buf[i + 11] << 8)
            if (crc32(self.mv[i:i + 10]) & 0xFFFF) != hc or ver == 0:
                self.bad_header += 1
                self.garbage += 1
                self.start = i + 1
                continue
            if n > self.max_payload:
                self.oversize += 1
                self.garbage += 1
                self.start = i + 1
                continue
            total = HDR_LEN + n + CRC_LEN
            if e - i < total:
                self.want = total
                return None
            c = (buf[i + HDR_LEN + n] | (buf[i + HDR_LEN + n + 1] << 8) |
                 (buf[i + HDR_LEN + n + 2] << 16) | (buf[i + HDR_LEN + n + 3] << 24))
            if crc32(self.mv[i:i + HDR_LEN + n]) != c:
                self.bad_crc += 1
                self.garbage += 1
                self.start = i + 1
                continue
            self.start = i + total
            self.version = ver
            self.frames += 1
            self.want = 0
            return (buf[i + 3], buf[i + 4] | (buf[i + 5] << 8),
                    self.mv[i + HDR_LEN:i + HDR_LEN + n])

    def rescan(self):
        """On a receive time-out with bytes still buffered: give up on the
        candidate frame at the head (a false sync whose claimed length will
        never arrive) and let next() scan on from the byte after it."""
        if self.want:
            self.truncated += 1
        self.want = 0
        if self.end > self.start:
            self.start += 1
            self.garbage += 1
            return True
        return False

    def stale(self, waited_ms, baud):
        """Whether a head candidate that has waited `waited_ms` without new bytes is a
        truncated frame (its rest will never come): longer than its own line time at
        `baud` (8N1) plus STALE_MS. The receiver then calls rescan()."""
        if not self.want:
            return False
        return waited_ms > STALE_MS + (self.want * 10000) // baud

    def feed_all(self, data):
        """Host helper: feed everything, return [(type, seq, bytes payload)]."""
        out = []
        mv = memoryview(data)
        pos = 0
        while True:
            k = self.feed(mv[pos:])
            pos += k
            while True:
                f = self.next()
                if f is None:
                    break
                out.append((f[0], f[1], bytes(f[2])))
            if pos >= len(data):
                break
            if k == 0:
                # cannot happen while frames are bounded; never spin
                self.rescan()
        return out

    def stats(self):
        return {"frames": self.frames, "garbage": self.garbage,
                "bad_header": self.bad_header, "bad_crc": self.bad_crc,
                "oversize": self.oversize, "truncated": self.truncated}


# ------------------------------------------------------------------ flow control


def window_for(read_buf_len):
    return read_buf_len - WINDOW_MARGIN


def chunk_for(window, chunk=DEFAULT_CHUNK):
    """Largest IMAGE_DATA chunk so that at least 4 frames fit the window."""
    c = (window // 4) - OVERHEAD - 8
    if c > chunk:
        c = chunk
    c -= c % 8   # whole pixels: chunks never split an RGB565 pixel
    if c < 64:
        raise ValueError("window too small for image transfer: %d" % window)
    return c


# ------------------------------------------------------------------ payloads
def pack_json(obj):
    return json.dumps(obj).encode("utf-8")


def pack_ack(consumed, last_seq=None):
    """ACK: bytes consumed since HELLO (mod 2**32) and, from boards with the seq_ack
    feature, the sequence number of the last host frame parsed intact."""
    if last_seq is None:
        return struct.pack("<I", consumed & 0xFFFFFFFF)
    return struct.pack("<IH", consumed & 0xFFFFFFFF, last_seq & 0xFFFF)


def unpack_resend(payload):
    if len(payload) != 4:
        raise ProtocolError("RESEND payload must be 4 bytes")
    return struct.unpack("<I", bytes(payload))[0]


def pack_error(code, ref, text):
    t = text if isinstance(text, bytes) else str(text).encode("utf-8")
    return struct.pack("<IH", ref & 0xFFFFFFFF, _u(code, U16, "error code")) + t[:512]


IMG_BEGIN_FMT = "<IBBHHI"
IMG_BEGIN_LEN = 14


def unpack_image_begin(payload):
    if len(payload) != IMG_BEGIN_LEN:
        raise ProtocolError("IMAGE_BEGIN payload must be %d bytes" % IMG_BEGIN_LEN)
    return struct.unpack(IMG_BEGIN_FMT, bytes(payload))


def unpack_image_data(payload):
    """-> (image_id, offset, data memoryview/bytes)."""
    if len(payload) < 8:
        raise ProtocolError("IMAGE_DATA payload too short")
    image_id, offset = struct.unpack("<II", bytes(payload[0:8]))
    return image_id, offset, payload[8:]


def pack_floats(values):
    """float32 little-endian bytes (array('f') in C on the board; len() of a
    part must count bytes, so the array is turned into bytes)."""
    if _array is not None and _LITTLE:
        return bytes(_array("f", values))
    return struct.pack("<%df" % len(values), *values)


RESULT_FMT = "<IHHfffIIBBHI"
RESULT_LEN = 36
OUT_FMT = "<HHHI"      # C, H, W, element count; then count float32
OUT_LEN = 10
BOX_FMT = "<5fH"       # x0, y0, x1, y1, score, class_id
BOX_LEN = 22
MASK_FMT = "<HH"       # h, w; then h*w uint8 class ids (flag R_MASK)


def pack_boxes(boxes, buf=None):
    """A RESULT's box records (BOX_FMT each) of boxes [(x0, y0, x1, y1, score, class_id)]:
    into `buf`, a bytearray of at least BOX_LEN bytes a box the caller reuses (the board),
    as a view of the records, else as a new bytearray."""
    bb = bytearray(BOX_LEN * len(boxes)) if buf is None else buf
    k = 0
    for b in boxes:
        struct.pack_into(BOX_FMT, bb, k, b[0], b[1], b[2], b[3], b[4],
                         _u(int(b[5]), U16, "class id"))
        k += BOX_LEN
    return bb if buf is None else memoryview(bb)[:k]


def pack_result_parts(image_id, outputs, boxes, kpu_ms=0.0, decode_ms=0.0, prep_ms=0.0,
                      input_crc=0, pixel_crc=0, crc_source=CRC_NONE, mem_free=0, flags=0,
                      packed=None, mask=None):
    """Payload parts of a RESULT. outputs: [(shape (C, H, W), flat floats)];
    boxes: [(x0, y0, x1, y1, score, class_id)], or their records made by pack_boxes (the
    board packs them into a buffer it reuses); packed: each output's float32 bytes made by
    the caller (the board packs into buffers it reuses), else pack_floats here; mask:
    (h, w, h*w class id bytes) sets R_MASK."""
    records = boxes if not isinstance(boxes, (list, tuple)) else pack_boxes(boxes)
    n_boxes = len(records) // BOX_LEN
    if mask is not None:
        flags |= R_MASK
    parts = [struct.pack(RESULT_FMT, image_id & 0xFFFFFFFF, _u(len(outputs), U16, "outputs"),
                         _u(n_boxes, U16, "boxes"), kpu_ms, decode_ms, prep_ms,
                         input_crc & 0xFFFFFFFF, pixel_crc & 0xFFFFFFFF,
                         _u(crc_source, U8, "crc source"), _u(flags, U8, "result flags"), 0,
                         mem_free & 0xFFFFFFFF)]
    for i, (shape, values) in enumerate(outputs):
        parts.append(struct.pack(OUT_FMT, _u(shape[0], U16, "output C"),
                                 _u(shape[1], U16, "output H"), _u(shape[2], U16, "output W"),
                                 _u(len(values), U32, "output values")))
        parts.append(pack_floats(values) if packed is None else packed[i])
    if n_boxes:
        parts.append(records)
    if mask is not None:
        parts += [struct.pack(MASK_FMT, _u(mask[0], U16, "mask h"), _u(mask[1], U16, "mask w")),
                  mask[2]]
    return parts


# ------------------------------------------------------------------ pixels
def expansion_tables():
    """Firmware RGB565 -> 8-bit rule: R,B round(v*255/31), G round(v*255/63)."""
    rb = bytearray(32)
    g = bytearray(64)
    for v in range(32):
        rb[v] = (v * 255 * 2 + 31) // 62
    for v in range(64):
        g[v] = (v * 255 * 2 + 63) // 126
    return rb, g


def planar_crc(rgb565, width, height, rowbuf=None, tables=None):
    """CRC32 of the planar R, G, B uint8 bytes pix_to_ai() makes from big-endian
    RGB565 pixels, computed in three passes with one row buffer (no 3*W*H
    allocation). Cost on the board: ~3*W*H Python loop steps."""
    if tables is None:
        tables = expansion_tables()
    rb, g6 = tables
    # 256-entry tables indexed by the high / low byte
    hi_r = bytearray(256)
    lo_b = bytearray(256)
    for v in range(256):
        hi_r[v] = rb[v >> 3]
        lo_b[v] = rb[v & 31]
    if rowbuf is None:
        rowbuf = bytearray(width)
    c = 0
    rowlen = 2 * width
    for plane in range(3):
        for y in range(height):
            j = y * rowlen
            if plane == 0:
                for x in range(width):
                    rowbuf[x] = hi_r[rgb565[j]]
                    j += 2
            elif plane == 1:
                for x in range(width):
                    rowbuf[x] = g6[((rgb565[j] & 7) << 3) | (rgb565[j + 1] >> 5)]
                    j += 2
            else:
                j += 1
                for x in range(width):
                    rowbuf[x] = lo_b[rgb565[j]]
                    j += 2
            c = crc32(rowbuf, c)
    return c
