"""Deterministic synthetic face-like dataset (Pillow drawing), 320x224 RGB.

Every image is drawn from its own random stream ``RandomState([seed, index])``, so image
``i`` of seed ``s`` is the same whatever ``n`` is, and different seeds give independent sets.

An image: a background (colour gradient, random shapes/lines as clutter, distractor
ellipses of non-skin colours, some with eye-like dots), 0-4 faces (skin-toned ellipse,
eyes, optional brows/nose/hair, mouth; height 16-120 px), then lighting (gain, gradient,
colour cast), optional blur, pixel noise and a JPEG round trip (quality 92) so that
in-memory samples look exactly like the files written to disk.

Labels: one box per face, ``[x0, y0, x1, y1]`` as fractions of the image width/height.

CLI::

    python examples/face/dataset.py OUT_DIR --count 80 --seed 3000 [--no-labels]

writes ``000.jpg`` ... and ``labels.json``:
``{"labels": ["face"], "images": {"000.jpg": [[x0, y0, x1, y1], ...], ...}}``.
"""
import argparse
import io
import json
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 320, 224
LABELS = ["face"]
JPEG_QUALITY = 92
MIN_FACE, MAX_FACE = 16, 120  # face height in pixels

# Disjoint sets: every set has its own seed (image i of seed s: RandomState([s, i])).
TRAIN_SEED, VAL_SEED, EVAL_SEED, CALIB_SEED = 1000, 2000, 3000, 4000

SKIN_TONES = [
    (255, 224, 189), (255, 205, 148), (234, 192, 134), (241, 194, 125),
    (224, 172, 105), (198, 134, 66), (170, 110, 65), (141, 85, 36),
    (120, 72, 40), (250, 210, 180),
]
HAIR_COLOURS = [(20, 15, 10), (60, 40, 20), (110, 70, 30), (180, 140, 80), (90, 90, 90),
                (30, 25, 25)]
# Distractor ellipses: clearly not skin (blue, green, purple, cyan, grey, white, dark red...).
DISTRACTOR_COLOURS = [(60, 90, 200), (40, 160, 70), (140, 60, 170), (60, 190, 200),
                      (150, 150, 150), (235, 235, 240), (170, 30, 40), (230, 230, 60),
                      (30, 30, 40), (90, 140, 110)]

# Pixel coordinates centred on the image, as fractions: gradients and light ramps.
_YS, _XS = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
_YS, _XS = _YS / HEIGHT - 0.5, _XS / WIDTH - 0.5


def _jitter(rng, colour, amount):
    return tuple(min(255, max(0, int(c + rng.randint(-amount, amount + 1)))) for c in colour)


def _random_colour(rng):
    return tuple(int(v) for v in rng.randint(0, 256, size=3))


def _background(rng):
    """Gradient between two random colours in a random direction, as float HxWx3."""
    c0 = np.array(_random_colour(rng), np.float32)
    c1 = np.array(_random_colour(rng), np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = _XS * np.cos(angle) + _YS * np.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    return img


def _clutter(rng, draw):
    for _ in range(rng.randint(2, 16)):
        kind = rng.randint(4)
        colour = _random_colour(rng)
        x0, y0 = rng.randint(-20, WIDTH), rng.randint(-20, HEIGHT)
        w, h = rng.randint(5, 120), rng.randint(5, 120)
        if kind == 0:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
        elif kind == 1:
            draw.line([x0, y0, x0 + rng.randint(-150, 150), y0 + rng.randint(-150, 150)],
                      fill=colour, width=int(rng.randint(1, 6)))
        elif kind == 2:
            pts = [(int(x0 + rng.randint(0, w)), int(y0 + rng.randint(0, h)))
                   for _ in range(rng.randint(3, 6))]
            draw.polygon(pts, fill=colour)
        else:
            draw.ellipse([x0, y0, x0 + w, y0 + h], outline=colour, width=int(rng.randint(1, 4)))


def _distractor(rng, draw):
    h = int(np.exp(rng.uniform(np.log(MIN_FACE), np.log(MAX_FACE))))
    w = max(4, int(h * rng.uniform(0.6, 1.4)))
    x0, y0 = rng.randint(-w // 3, WIDTH - w // 2), rng.randint(-h // 3, HEIGHT - h // 2)
    colour = _jitter(rng, DISTRACTOR_COLOURS[rng.randint(len(DISTRACTOR_COLOURS))], 25)
    draw.ellipse([x0, y0, x0 + w - 1, y0 + h - 1], fill=colour)
    if rng.rand() < 0.5:  # eye-like dots: colour, not the dots, tells a face
        dark = _jitter(rng, (25, 20, 20), 15)
        r = max(1, int(w * 0.08))
        for sx in (-1, 1):
            ex, ey = x0 + w / 2 + sx * 0.2 * w, y0 + 0.4 * h
            draw.ellipse([ex - r, ey - r, ex + r, ey + r], fill=dark)


def _face(rng, draw, x0, y0, w, h):
    skin = _jitter(rng, SKIN_TONES[rng.randint(len(SKIN_TONES))], 12)
    dark = _jitter(rng, (30, 20, 15), 15)
    cx = x0 + w / 2.0
    if rng.rand() < 0.5:  # hair behind the top of the head
        hair = _jitter(rng, HAIR_COLOURS[rng.randint(len(HAIR_COLOURS))], 15)
        draw.ellipse([x0 - 0.04 * w, y0 - 0.06 * h, x0 + 1.04 * w, y0 + 0.55 * h], fill=hair)
    outline = None
    if rng.rand() < 0.4:
        outline = tuple(int(c * 0.7) for c in skin)
    draw.ellipse([x0, y0, x0 + w - 1, y0 + h - 1], fill=skin, outline=outline)
    line = max(1, int(round(h / 40.0)))
    # eyes
    ey = y0 + h * rng.uniform(0.36, 0.44)
    dx = w * rng.uniform(0.17, 0.23)
    rx, ry = max(1.0, w * 0.09), max(1.0, h * rng.uniform(0.04, 0.06))
    for sx in (-1, 1):
        ex = cx + sx * dx
        if h >= 36:
            draw.ellipse([ex - rx, ey - ry, ex + rx, ey + ry], fill=_jitter(rng, (245, 245, 240), 10))
            pr = max(1.0, ry * 0.9)
            draw.ellipse([ex - pr, ey - pr, ex + pr, ey + pr], fill=dark)
        else:
            draw.ellipse([ex - rx * 0.7, ey - ry, ex + rx * 0.7, ey + ry], fill=dark)
        if rng.rand() < 0.6:  # eyebrow
            by = ey - h * 0.09
            draw.line([ex - rx * 1.1, by, ex + rx * 1.1, by - sx * 0 - h * 0.01], fill=dark, width=line)
    if rng.rand() < 0.6:  # nose
        ny = y0 + h * 0.58
        draw.line([cx, ey + h * 0.06, cx - w * 0.04, ny], fill=tuple(int(c * 0.75) for c in skin),
                  width=line)
    # mouth
    my = y0 + h * rng.uniform(0.70, 0.76)
    mw = w * rng.uniform(0.28, 0.42)
    mouth = _jitter(rng, (170, 40, 50), 30)
    style = rng.randint(3)
    if style == 0:  # smile
        draw.arc([cx - mw / 2, my - h * 0.08, cx + mw / 2, my + h * 0.05], 20, 160, fill=mouth,
                 width=max(1, line))
    elif style == 1:  # open mouth
        draw.ellipse([cx - mw / 2, my - h * 0.03, cx + mw / 2, my + h * 0.04], fill=mouth)
    else:  # straight
        draw.line([cx - mw / 2, my, cx + mw / 2, my], fill=mouth, width=max(1, line))


def _place_faces(rng, count):
    boxes = []
    for _ in range(count):
        for _attempt in range(20):
            h = int(round(np.exp(rng.uniform(np.log(MIN_FACE), np.log(MAX_FACE)))))
            w = max(8, int(round(h * rng.uniform(0.72, 0.88))))
            x0 = rng.randint(0, WIDTH - w + 1)
            y0 = rng.randint(0, HEIGHT - h + 1)
            box = (x0, y0, x0 + w, y0 + h)
            if all(_overlap_small(box, b) < 0.1 for b in boxes):
                boxes.append(box)
                break
    return boxes


def _overlap_small(a, b):
    """Intersection over the smaller box (hair and heads must not hide another face)."""
    # Inflate a little upwards for hair.
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1]) + 0.1 * max(a[3] - a[1], b[3] - b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / float(small)


def make_image(seed, index):
    """Draw image ``index`` of set ``seed``: returns (uint8 HxWx3 RGB array, boxes).

    Boxes are lists [x0, y0, x1, y1] as fractions of the image; the pixels are what a JPEG
    (quality 92) written by :func:`write_folder` decodes to.
    """
    rng = np.random.RandomState([seed & 0xFFFFFFFF, index & 0xFFFFFFFF])
    base = Image.fromarray(_background(rng).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(base)
    _clutter(rng, draw)
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):
        _distractor(rng, draw)
    count = int(rng.choice(5, p=[0.1, 0.3, 0.25, 0.2, 0.15]))
    pix_boxes = _place_faces(rng, count)
    for (x0, y0, x1, y1) in pix_boxes:
        _face(rng, draw, x0, y0, x1 - x0, y1 - y0)
    if rng.rand() < 0.3:
        base = base.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.0))))
    img = np.asarray(base, np.float32)
    # Lighting: global gain, a linear light gradient, a colour cast; then sensor noise.
    gain = rng.uniform(0.6, 1.25)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = _XS * np.cos(ang) + _YS * np.sin(ang)
    light = gain * (1.0 + rng.uniform(0, 0.5) * ramp)
    cast = rng.uniform(0.88, 1.12, size=3).astype(np.float32)
    img = img * light[..., None] * cast[None, None, :]
    # Sensor noise: uniform, std sigma (random bytes: much cheaper than normal draws).
    sigma = rng.uniform(0, 8)
    noise = np.frombuffer(rng.bytes(img.size), np.uint8).reshape(img.shape)
    img = img + (noise.astype(np.float32) - 127.5) * np.float32(sigma / 73.9)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    jpeg = buf.getvalue()
    pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    boxes = [[round(x0 / float(WIDTH), 6), round(y0 / float(HEIGHT), 6),
              round(x1 / float(WIDTH), 6), round(y1 / float(HEIGHT), 6)]
             for (x0, y0, x1, y1) in pix_boxes]
    return pixels, boxes, jpeg


def generate(n, seed):
    """``n`` images of set ``seed``: (uint8 array [n, 224, 320, 3], list of box lists)."""
    images = np.empty((n, HEIGHT, WIDTH, 3), np.uint8)
    labels = []
    for i in range(n):
        pixels, boxes, _ = make_image(seed, i)
        images[i] = pixels
        labels.append(boxes)
    return images, labels


def image_name(index):
    return "%03d.jpg" % index


def write_folder(out_dir, count, seed, with_labels=True):
    """Write ``count`` JPEGs (+ labels.json) of set ``seed`` into ``out_dir`` atomically.

    Files already in ``out_dir`` with other names are left alone; same names are replaced.
    """
    _repo_on_path()
    from host.atomic import staged_dir

    labels = {}
    with staged_dir(out_dir) as stage:
        for i in range(count):
            _, boxes, jpeg = make_image(seed, i)
            name = image_name(i)
            with open(os.path.join(stage, name), "wb") as f:
                f.write(jpeg)
            labels[name] = boxes
        if with_labels:
            with open(os.path.join(stage, "labels.json"), "w") as f:
                f.write(labels_json(labels))
    return labels


def labels_json(labels):
    """labels.json text: {"labels": [...], "images": {name: boxes}}, one image a line."""
    lines = ['  %s: %s' % (json.dumps(name), json.dumps(labels[name]))
             for name in sorted(labels)]
    return ('{"labels": %s,\n "images": {\n' % json.dumps(LABELS)
            + ",\n".join(lines) + "\n }\n}\n")


def read_labels(path):
    """labels.json -> (label names, {image name: [[x0, y0, x1, y1], ...]})."""
    with open(path) as f:
        doc = json.load(f)
    return doc["labels"], doc["images"]


def _repo_on_path():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if root not in sys.path:
        sys.path.insert(0, root)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--count", type=int, default=80)
    p.add_argument("--seed", type=int, default=3000)
    p.add_argument("--no-labels", action="store_true")
    args = p.parse_args(argv)
    labels = write_folder(args.out_dir, args.count, args.seed, not args.no_labels)
    faces = sum(len(b) for b in labels.values())
    print("wrote %d images (%d faces) to %s" % (args.count, faces, args.out_dir))


if __name__ == "__main__":
    main()
