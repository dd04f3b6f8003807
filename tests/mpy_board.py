"""Host side of the serve-loop conformance runs: the board config, the byte stream the host
sends (tests/mpy_standins/machine.py plays it into the board's UART), and the check of every
frame the board wrote against what the host computes from the same pixels: KPU outputs
(tests/mpy_standins/maix.py's function of the KPU input), boxes (device/decoders.py on the
host), input and pixel CRCs."""
import binascii
import io
import os
import struct

import numpy as np
from PIL import Image

from device import decoders
from device import protocol as P
from device import protocol_host as PH
from host import rgb565z

YOLO_ANCHORS = [1.08, 1.19, 3.42, 4.41, 6.63, 11.38, 9.42, 5.11, 16.62, 10.52]


def config(width, height, decoder, shape, mode="serve", read_buf_len=32768, threshold=0.5,
           channels=3):
    dec = {"type": decoder, "threshold": threshold, "nms": 0.3, "classes": 1,
           "labels": ["face"]}
    if decoder == "yolo2":
        dec["anchors"] = list(YOLO_ANCHORS[:2 * (shape[0] // 6)])
    return {"mode": mode, "baud": 1500000, "repl_baud": 115200, "read_buf_len": read_buf_len,
            "grace_ms": 0, "input_crc": "auto",
            "model": {"source": "flash", "address": 0x300000, "size": 143232, "version": 5},
            "input": {"width": width, "height": height, "channels": channels},
            "outputs": [{"node": "out", "shape": list(shape)}], "decoder": dec,
            "firmware": "canmv-v5"}


def rgb565_image(rng, width, height):
    """Smooth pixels with some noise (a JPEG of them stays small), RGB565 big-endian."""
    y, x = np.mgrid[0:height, 0:width]
    base = rng.randint(0, 256, size=3)
    rgb = np.stack([(base[c] + x * (c + 1) * 3 + y * (3 - c) * 2) % 256 for c in range(3)], -1)
    rgb = np.clip(rgb + rng.randint(-6, 7, size=rgb.shape), 0, 255).astype(np.uint8)
    return rgb


def to_rgb565(rgb):
    r = rgb[..., 0].astype(np.uint16) >> 3
    g = rgb[..., 1].astype(np.uint16) >> 2
    b = rgb[..., 2].astype(np.uint16) >> 3
    v = (r << 11) | (g << 5) | b
    return v.astype(">u2").tobytes()


def jpeg_of(rgb, jpeg_dir):
    """JPEG bytes of the image, and its decoded RGB565 pixels written where the board's
    image stand-in looks them up (by the JPEG's CRC32)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        px = to_rgb565(np.asarray(im.convert("RGB")))
    h, w = rgb.shape[:2]
    name = os.path.join(str(jpeg_dir), "%08x.rgb565" % (binascii.crc32(data) & 0xFFFFFFFF))
    with open(name, "wb") as f:
        f.write(struct.pack("<HH", w, h) + px)
    return data, px


def planar_ai(px):
    """The KPU input bytes pix_to_ai makes: planar R, G, B (rgb2rgb_tab.c tables)."""
    rb, g6 = P.expansion_tables()
    a = np.frombuffer(px, np.uint8)
    hi, lo = a[0::2], a[1::2]
    rb, g6 = np.frombuffer(bytes(rb), np.uint8), np.frombuffer(bytes(g6), np.uint8)
    return (rb[hi >> 3].tobytes() + g6[((hi & 7) << 3) | (lo >> 5)].tobytes()
            + rb[lo & 31].tobytes())


def gray_table(path):
    """The firmware's RGB565 -> GRAYSCALE table by the uint16 the CPU reads from the
    big-endian pixel bytes (tests/mpy_standins/image.py to_grayscale), from host.pixels."""
    from host import pixels
    in_memory = np.arange(65536, dtype=np.uint16)
    table = pixels.luminance(pixels.expand_rgb565(in_memory.byteswap()))
    with open(str(path), "wb") as f:
        f.write(table.tobytes())
    return str(path)


def kpu_input(cfg, pixels):
    """The KPU input bytes of an image's pixels: planar R, G, B of RGB565, or the gray bytes
    themselves (pix_to_ai of a GRAYSCALE image copies them)."""
    return pixels if cfg["input"].get("channels", 3) == 1 else planar_ai(pixels)


def kpu_outputs(ai, shape, k=0):
    """tests/mpy_standins/maix.py kpu_outputs, on the host."""
    n_in = len(ai)
    n = shape[0] * shape[1] * shape[2]
    return [(ai[(i * 7919 + 31 * k) % n_in] - 224) / 16.0 for i in range(n)]


def frame_pixels(seed, frame, n):
    """tests/mpy_standins/sensor.py frame_pixels, on the host: the camera's frame."""
    return bytes([(i * 131 + frame * 17 + seed * 7 + (i >> 5)) & 0xFF for i in range(n)])


class Stream:
    """The bytes the host sends, built frame by frame; records what each image should give."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.seq = 0
        self.data = bytearray()
        self.chunk = P.chunk_for(P.window_for(cfg["read_buf_len"]))
        self.expect = {}             # image id -> pixels (RGB565 bytes) the board must run on

    def frame(self, ftype, payload=b""):
        self.data += P.encode(ftype, self.seq, payload)
        self.seq = (self.seq + 1) & 0xFFFF

    def image(self, image_id, fmt, payload, pixels, flags=P.F_INPUT_CRC, width=None,
              height=None):
        """rgb565z: `payload` is the RGB565 bytes (deflated here, one segment per chunk) or
        a list of ready segments (to send broken ones)."""
        w = self.cfg["input"]["width"] if width is None else width
        h = self.cfg["input"]["height"] if height is None else height
        if fmt == P.FMT_RGB565Z and not isinstance(payload, list):
            payload = rgb565z.segments(payload, self.chunk)     # RGB565 bytes: deflate them
        if fmt == P.FMT_RGB565Z:
            frames = rgb565z.image_frames(image_id, flags, w, h, payload)
        else:
            frames = PH.image_frames(image_id, fmt, flags, w, h, payload, self.chunk)
        for ftype, body in frames:
            self.frame(ftype, body)
        if pixels is not None:
            self.expect[image_id] = (pixels, flags)

    def write(self, path):
        with open(str(path), "wb") as f:
            f.write(bytes(self.data))


def board_frames(path):
    with open(str(path), "rb") as f:
        data = f.read()
    parser = P.Parser()
    frames = parser.feed_all(data)
    assert parser.garbage == 0 and parser.dropped() == 0, parser.stats()
    return frames


def check_results(cfg, stream, frames):
    """Every image the stream expects has one RESULT equal to the host's computation.
    Returns (cases compared, differences, RESULTs by id, ERRORs)."""
    results = {}
    errors = []
    for ftype, _seq, payload in frames:
        if ftype == P.T_RESULT:
            r = PH.unpack_result(payload)
            results.setdefault(r["image_id"], []).append((payload, r))
        elif ftype == P.T_ERROR:
            errors.append(PH.unpack_error(payload))
    diffs = []
    shape = tuple(cfg["outputs"][0]["shape"])
    for image_id, (pixels, flags) in sorted(stream.expect.items()):
        got = results.get(image_id)
        if not got:
            diffs.append((image_id, "no RESULT", errors[-3:]))
            continue
        r = got[0][1]
        ai = kpu_input(cfg, pixels)
        outs = kpu_outputs(ai, shape)
        if r["outputs"][0]["data"] != outs:
            diffs.append((image_id, "outputs differ"))
        want = [] if flags & P.F_NO_BOXES else decoders.decode(
            cfg["decoder"]["type"], outs, shape, cfg["decoder"])
        pack = lambda boxes: b"".join(struct.pack("<5fH", *b) for b in boxes)  # noqa: E731
        if pack(r["boxes"]) != pack(want):
            diffs.append((image_id, "boxes differ", r["boxes"][:3], want[:3]))
        if r["pixel_crc"] != binascii.crc32(pixels) & 0xFFFFFFFF:
            diffs.append((image_id, "pixel CRC differs"))
        if flags & P.F_INPUT_CRC:
            if r["crc_source"] == P.CRC_NONE or r["input_crc"] != binascii.crc32(ai) & 0xFFFFFFFF:
                diffs.append((image_id, "input CRC differs", r["crc_source"]))
        if r["flags"] & P.R_DECODE_FAILED:
            diffs.append((image_id, "the board's decoder failed"))
    return len(stream.expect), diffs, results, errors
