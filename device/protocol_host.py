# The host's half of the frame codec (device/protocol.py): what only the host packs
# (IMAGE_BEGIN, IMAGE_DATA, RESEND) or unpacks (INFO, ACK, ERROR, RESULT), and its credit
# window. Written in the board's dialect beside protocol.py, so the conformance suite runs it
# on MicroPython 1.11 as well (tests/test_mpy_protocol.py); the board never imports it and it
# is not uploaded: its bytecode cost ~10 KB of MaixPy's 512 KiB GC heap, which the serve
# loop needs (docs/design.md, "Board memory").
try:
    import protocol as P
except ImportError:
    from device import protocol as P
try:
    import ustruct as struct
except ImportError:
    import struct
try:
    import ujson as json
except ImportError:
    import json


class Credit:
    """Sender side of the credit window (host).

    The board acknowledges the number of bytes it has taken out of its UART
    receive buffer since HELLO (mod 2**32). The sender keeps
    sent - acknowledged <= window, so the board's ring buffer (window =
    read_buf_len - WINDOW_MARGIN) can never overflow, whatever the baud rate."""

    def __init__(self, window):
        if window < P.OVERHEAD + 1:
            raise ValueError("window too small: %d" % window)
        self.window = window
        self.sent = 0
        self.acked = 0

    def in_flight(self):
        return self.sent - self.acked

    def can_send(self, n):
        return self.sent - self.acked + n <= self.window

    def on_send(self, n):
        if not self.can_send(n):
            raise P.ProtocolError("credit exceeded: %d in flight + %d > %d"
                                  % (self.in_flight(), n, self.window))
        self.sent += n

    def on_ack(self, consumed):
        """consumed: the ACK value (mod 2**32). Returns the new credit."""
        behind = (self.sent - consumed) & 0xFFFFFFFF
        if behind > self.sent - self.acked:
            # stale or duplicated ACK (older than what we know): ignore
            return self.window - self.in_flight()
        self.acked = self.sent - behind
        return self.window - self.in_flight()


def unpack_json(payload):
    return json.loads(bytes(payload).decode("utf-8"))


def unpack_ack(payload):
    return unpack_ack_seq(payload)[0]


def unpack_ack_seq(payload):
    """-> (consumed, last_seq or None)."""
    if len(payload) == 4:
        return struct.unpack("<I", bytes(payload))[0], None
    if len(payload) != 6:
        raise P.ProtocolError("ACK payload must be 4 or 6 bytes")
    return struct.unpack("<IH", bytes(payload))


def pack_resend(image_id):
    return struct.pack("<I", image_id & 0xFFFFFFFF)


def unpack_error(payload):
    if len(payload) < 6:
        raise P.ProtocolError("ERROR payload too short")
    ref, code = struct.unpack("<IH", bytes(payload[0:6]))
    return {"ref": ref, "code": code, "name": P.ERROR_NAMES.get(code, "?"),
            "reason": _text(bytes(payload[6:]))}


def _text(raw):
    """UTF-8 text; if it is not valid UTF-8, non-ASCII bytes become '?'. MicroPython 1.11's
    decode() has no errors= argument (it raises UnicodeError): both sides do this instead."""
    try:
        return raw.decode("utf-8")
    except UnicodeError:
        return "".join([chr(b) if b < 128 else "?" for b in raw])


def pack_image_begin(image_id, fmt, flags, width, height, total):
    return struct.pack(P.IMG_BEGIN_FMT, image_id & 0xFFFFFFFF,
                       P._u(fmt, P.U8, "image format"), P._u(flags, P.U8, "image flags"),
                       P._u(width, P.U16, "image width"), P._u(height, P.U16, "image height"),
                       P._u(total, P.U32, "image bytes"))


def pack_image_data_prefix(image_id, offset):
    return struct.pack("<II", image_id & 0xFFFFFFFF, P._u(offset, P.U32, "image offset"))


def image_frames(image_id, fmt, flags, width, height, data, chunk=P.DEFAULT_CHUNK):
    """Host helper: yield (type, payload bytes) for one image."""
    yield P.T_IMAGE_BEGIN, pack_image_begin(image_id, fmt, flags, width, height, len(data))
    mv = memoryview(data)
    off = 0
    while off < len(data):
        n = min(chunk, len(data) - off)
        yield P.T_IMAGE_DATA, pack_image_data_prefix(image_id, off) + bytes(mv[off:off + n])
        off += n


def unpack_floats(payload):
    n = len(payload) // 4
    return list(struct.unpack("<%df" % n, bytes(payload[0:4 * n])))


def unpack_result(payload):
    p = bytes(payload)
    if len(p) < P.RESULT_LEN:
        raise P.ProtocolError("RESULT payload too short")
    (image_id, n_out, n_box, kpu_ms, decode_ms, prep_ms, input_crc, pixel_crc,
     crc_source, flags, _res, mem_free) = struct.unpack(P.RESULT_FMT, p[0:P.RESULT_LEN])
    k = P.RESULT_LEN
    outputs = []
    for _ in range(n_out):
        if len(p) < k + P.OUT_LEN:
            raise P.ProtocolError("RESULT truncated in output header")
        c, h, w, cnt = struct.unpack(P.OUT_FMT, p[k:k + P.OUT_LEN])
        k += P.OUT_LEN
        if len(p) < k + 4 * cnt:
            raise P.ProtocolError("RESULT truncated in output data")
        outputs.append({"shape": (c, h, w),
                        "data": list(struct.unpack("<%df" % cnt, p[k:k + 4 * cnt]))})
        k += 4 * cnt
    boxes = []
    for _ in range(n_box):
        if len(p) < k + P.BOX_LEN:
            raise P.ProtocolError("RESULT truncated in boxes")
        boxes.append(struct.unpack(P.BOX_FMT, p[k:k + P.BOX_LEN]))
        k += P.BOX_LEN
    mask = None
    if flags & P.R_MASK:
        if len(p) < k + 4:
            raise P.ProtocolError("RESULT truncated in mask header")
        mh, mw = struct.unpack(P.MASK_FMT, p[k:k + 4])
        mask = {"h": mh, "w": mw, "ids": p[k + 4:k + 4 + mh * mw]}
        k += 4 + mh * mw
        if len(p) < k:
            raise P.ProtocolError("RESULT truncated in mask")
    if k != len(p):
        raise P.ProtocolError("RESULT has %d trailing bytes" % (len(p) - k))
    return {"image_id": image_id, "outputs": outputs, "boxes": boxes,
            "kpu_ms": kpu_ms, "decode_ms": decode_ms, "prep_ms": prep_ms,
            "input_crc": input_crc, "pixel_crc": pixel_crc,
            "crc_source": crc_source, "flags": flags, "mem_free": mem_free, "mask": mask}
