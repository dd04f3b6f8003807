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

Payload `gray8` (grayscale models, manifest input.channels 1, and only they): w*h luminance
bytes, `host.pixels.board_gray_pixels`: the image quantised to RGB565 as for rgb565, then the
firmware's `to_grayscale()` luminance, so a gray8 image and the same picture converted on the
board agree. The board writes them into its GRAYSCALE Image; pix_to_ai() copies them as the
KPU input. A grayscale model takes no other payload (an RGB565 or JPEG image would need
`to_grayscale()` on the board: twice the bytes on the wire for the same KPU input).

Host CRCs (docs/protocol.md): `pixel_crc` = CRC32 of the big-endian RGB565 bytes (gray8: of
the w*h bytes), `input_crc` = CRC32 of the planar uint8 R, G, B bytes pix_to_ai() makes (the
KPU input layout; gray8: the w*h bytes again).
"""
import binascii
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from device import protocol as P
from device.payloads import MAX_JPEG   # the largest JPEG a board takes
from host import pixels
from host.errors import UserError
from host.manifest import sha256_file

PAYLOADS = ("rgb565", "jpeg", "gray8")                   # what an EvalImage holds
CHOICES = ("auto", "rgb565z", "rgb565", "jpeg", "gray8")  # --payload
JPEG_QUALITY = 95


class EvalImage(object):
    """One image: `name`, `path`, `sha256` (of the file), `source_size` (w, h), `resized`,
    `payload` (bytes), `fmt`, `pixels` (uint8 HxWxC the KPU receives, C 3 or 1), `pixel_crc`
    (of `image_bytes`, the Image's pixel buffer on the board), `input_crc`."""

    def __init__(self, name, path, source_size, resized, payload, fmt, board_px, image_bytes):
        self.name = name
        self.path = path
        self.sha256 = sha256_file(path)
        self.source_size = source_size
        self.resized = resized
        self.payload = payload
        self.fmt = fmt
        self.pixels = board_px
        self.pixel_crc = binascii.crc32(image_bytes) & 0xFFFFFFFF
        self.input_crc = planar_crc(board_px)


def planar_crc(board_px):
    """CRC32 of uint8 HxWxC pixels laid out as the KPU input: planar R, G, B (or gray)."""
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
    if payload == "gray8":
        gray = pixels.board_gray_pixels(rgb, width, height)
        data = gray.tobytes()
        return EvalImage(name, path, source_size, resized, data, P.FMT_GRAY8, gray, data)
    if payload == "rgb565":
        q = pixels.quantize_rgb565(np.asarray(pixels.resize(rgb, width, height)))
        data = pixels.rgb565_bytes(q)
        return EvalImage(name, path, source_size, resized, data, P.FMT_RGB565,
                         pixels.expand_rgb565(q), data)
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
                     pixels.expand_rgb565(q), pixels.rgb565_bytes(q))


def pixel_payload(choice, channels=3):
    """The EvalImage payload a --payload choice needs for a `channels`-channel model (the
    manifest's input.channels): rgb565z travels as rgb565 bytes; a grayscale model gray8."""
    if choice not in CHOICES:
        raise UserError("--payload must be one of %s, not %r" % (", ".join(CHOICES), choice))
    if channels == 1:
        if choice not in ("auto", "gray8"):
            raise UserError("--payload %s: the model's input is grayscale (manifest "
                            "input.channels 1), which takes gray8 images only: use --payload "
                            "gray8 or auto" % choice)
        return "gray8"
    if choice == "gray8":
        raise UserError("--payload gray8 is for grayscale models, but the model's input is RGB "
                        "(manifest input.channels %d): use --payload auto, rgb565z, rgb565 or "
                        "jpeg" % channels)
    return "jpeg" if choice == "jpeg" else "rgb565"


def choose_format(choice, info):
    """(P.FMT_* for this board's RGB565 images, note or None). rgb565z only to a board whose
    INFO lists it; otherwise rgb565, with a note saying so. Grayscale models: gray8."""
    if "gray8" in (info.get("formats") or []):
        return P.FMT_GRAY8, None
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
