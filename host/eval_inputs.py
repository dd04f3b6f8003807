"""The evaluation images: what is sent to the board and the exact pixels the board's KPU gets.

Images whose size is not the model input are resized (bilinear, as calibration and
`host.pixels.board_pixels` do; the aspect ratio is not kept) and counted in the report.

Payload `rgb565` (the exact path): the host quantises to RGB565 (big-endian pixels, as the
firmware's Image holds them) and sends those bytes; the board's KPU input is their
`pix_to_ai()` expansion, which the host reproduces bit for bit (host.pixels).

Payload `jpeg` (the fast path, ~10x fewer bytes): the board decodes the JPEG itself. The host
sends the file's own bytes when it is a JPEG of the model size, else a JPEG it encodes
(quality 95) from the resized image, and reproduces the board's pixels by decoding the same
bytes with Pillow (libjpeg), then RGB565 + expansion, as the virtual board does. A real
board's JPEG decoder may differ by +-1 level in places: the board's input CRC then differs
from the host's, which the report flags as a preprocessing difference (use rgb565 to compare
the model alone).

Payload `rgb565z` (the exact path, compressed): the same RGB565 bytes as rgb565, deflated per
board chunk when sent (host.rgb565z); the board inflates them into the Image. Images are
prepared as rgb565; which boards get rgb565z is decided per board from its INFO `formats`
(`choose_format`): `--payload auto` (the default) and `rgb565z` use it where the board has
uzlib and fall back to rgb565 elsewhere.

Host CRCs (docs/protocol.md): `pixel_crc` = CRC32 of the big-endian RGB565 bytes, `input_crc` =
CRC32 of the planar uint8 R, G, B bytes pix_to_ai() makes (the KPU input layout).
"""
import binascii
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from device import protocol as P
from host import pixels
from host.errors import UserError
from host.manifest import sha256_file

PAYLOADS = ("rgb565", "jpeg")                   # what an EvalImage holds
CHOICES = ("auto", "rgb565z", "rgb565", "jpeg")  # --payload
JPEG_QUALITY = 95
MAX_JPEG = 262144      # device/server.py MAX_JPEG


class EvalImage(object):
    """One image: `name`, `path`, `sha256` (of the file), `source_size` (w, h), `resized`,
    `payload` (bytes), `fmt`, `pixels` (uint8 HxWx3 the KPU receives), `pixel_crc`,
    `input_crc`."""

    def __init__(self, name, path, source_size, resized, payload, fmt, board_px, rgb565):
        self.name = name
        self.path = path
        self.sha256 = sha256_file(path)
        self.source_size = source_size
        self.resized = resized
        self.payload = payload
        self.fmt = fmt
        self.pixels = board_px
        self.pixel_crc = binascii.crc32(pixels.rgb565_bytes(rgb565)) & 0xFFFFFFFF
        self.input_crc = planar_crc(board_px)


def planar_crc(board_px):
    """CRC32 of uint8 HxWx3 pixels laid out as the KPU input: planar R, G, B."""
    planar = np.ascontiguousarray(np.asarray(board_px, dtype=np.uint8).transpose(2, 0, 1))
    return binascii.crc32(planar.tobytes()) & 0xFFFFFFFF


def list_images(directory, limit=None):
    paths = pixels.list_images(directory, what="--images folder")
    if limit is not None:
        if limit < 1:
            raise UserError("--limit must be >= 1, not %d" % limit)
        paths = paths[:limit]
    return paths


def image_name(path):
    """An image's name in reports and the journal: its file name."""
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _sendable_jpeg(path):
    """The file's bytes when the board can take them as they are (a colour JPEG within the
    board's JPEG size limit), else None."""
    with open(path, "rb") as f:
        data = f.read(MAX_JPEG + 1)
    if not data.startswith(b"\xff\xd8") or len(data) > MAX_JPEG:
        return None
    with Image.open(io.BytesIO(data)) as im:
        return data if im.mode == "RGB" else None


def prepare(path, width, height, payload):
    """EvalImage for one file; UserError if it cannot be read."""
    if payload not in PAYLOADS:
        raise UserError("--payload must be one of %s, not %r" % (", ".join(PAYLOADS), payload))
    rgb = pixels.load_rgb(path)
    source_size = rgb.size
    resized = source_size != (width, height)
    name = image_name(path)
    if payload == "rgb565":
        q = pixels.quantize_rgb565(np.asarray(pixels.resize(rgb, width, height)))
        return EvalImage(name, path, source_size, resized, pixels.rgb565_bytes(q),
                         P.FMT_RGB565, pixels.expand_rgb565(q), q)
    data = None if resized else _sendable_jpeg(path)
    if data is None:
        buf = io.BytesIO()
        pixels.resize(rgb, width, height).save(buf, "JPEG", quality=JPEG_QUALITY)
        data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:       # what the board decodes
        decoded = im.convert("RGB")
        if decoded.size != (width, height):
            raise UserError("image %s decodes to %dx%d, the model input is %dx%d"
                            % (path, decoded.size[0], decoded.size[1], width, height))
        q = pixels.quantize_rgb565(np.asarray(decoded))
    return EvalImage(name, path, source_size, resized, data, P.FMT_JPEG,
                     pixels.expand_rgb565(q), q)


def pixel_payload(choice):
    """The EvalImage payload a --payload choice needs: rgb565z travels as rgb565 bytes."""
    if choice not in CHOICES:
        raise UserError("--payload must be one of %s, not %r" % (", ".join(CHOICES), choice))
    return "jpeg" if choice == "jpeg" else "rgb565"


def choose_format(choice, info):
    """(P.FMT_* for this board's RGB565 images, note or None). rgb565z only to a board whose
    INFO lists it; otherwise rgb565, with a note saying so."""
    if choice in ("auto", "rgb565z"):
        if "rgb565z" in (info.get("formats") or []):
            return P.FMT_RGB565Z, None
        return P.FMT_RGB565, ("its INFO formats %s have no rgb565z (no uzlib on this firmware, "
                              "or older device scripts): sending rgb565" % info.get("formats"))
    return (P.FMT_JPEG if choice == "jpeg" else P.FMT_RGB565), None


def prepare_all(paths, width, height, payload):
    return [prepare(p, width, height, payload) for p in paths]


def count_resized(paths, width, height):
    """How many of the image files are not width x height, from their headers only (images
    are prepared one by one as they are sent); UserError naming a file that is no image."""
    resized = 0
    for path in paths:
        try:
            with Image.open(path) as im:
                resized += im.size != (width, height)
        except (OSError, UnidentifiedImageError, SyntaxError) as exc:
            raise UserError("cannot read image %s (%s): remove it or replace it with a valid "
                            "JPEG/PNG" % (path, exc.__class__.__name__))
    return resized
