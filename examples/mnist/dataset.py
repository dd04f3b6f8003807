"""Deterministic MNIST-style digits drawn from strokes (Pillow), 28x28 grayscale.

Each digit 0-9 is a few polylines/arcs in a unit box. An image: every control point jittered,
a random affine (rotation, shear, scale, shift), strokes of random thickness drawn white on
black at 4x and downsampled (anti-aliased like MNIST), then contrast, background level and
pixel noise. Image ``i`` of seed ``s`` comes from ``RandomState([s, i])``, so sets with
different seeds are disjoint and an image does not depend on how many are drawn.
"""
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 28
SCALE = 4  # drawn at 4x, then downsampled
LABELS = [str(d) for d in range(10)]
TRAIN_SEED, EVAL_SEED, CALIB_SEED = 1100, 3100, 4100


def _arc(cx, cy, rx, ry, a0, a1, n=14):
    """Points of an elliptic arc, angles in degrees clockwise from +x (y points down)."""
    t = np.radians(np.linspace(a0, a1, n))
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))


# Strokes per digit: lists of (x, y) points in the unit box, y down.
STROKES = {
    0: [_arc(0.5, 0.5, 0.27, 0.4, 0, 360, 24)],
    1: [[(0.36, 0.26), (0.52, 0.1), (0.52, 0.9)]],
    2: [_arc(0.5, 0.32, 0.23, 0.22, 190, 370) + [(0.24, 0.9), (0.78, 0.9)]],
    3: [_arc(0.48, 0.3, 0.22, 0.2, 200, 450), _arc(0.48, 0.7, 0.25, 0.2, 270, 520)],
    4: [[(0.66, 0.9), (0.66, 0.1), (0.2, 0.64), (0.82, 0.64)]],
    5: [[(0.76, 0.1), (0.32, 0.1), (0.29, 0.46)] + _arc(0.48, 0.66, 0.26, 0.24, 225, 510)],
    6: [[(0.7, 0.1), (0.45, 0.22), (0.3, 0.45), (0.26, 0.66)],
        _arc(0.5, 0.68, 0.23, 0.21, 0, 360, 20)],
    7: [[(0.2, 0.1), (0.8, 0.1), (0.4, 0.9)]],
    8: [_arc(0.5, 0.29, 0.19, 0.19, 0, 360, 18), _arc(0.5, 0.69, 0.24, 0.21, 0, 360, 20)],
    9: [_arc(0.5, 0.32, 0.22, 0.21, 0, 360, 20), [(0.72, 0.34), (0.66, 0.9)]],
}


def _affine(rng):
    """2x3 matrix around the box centre: rotation, shear, anisotropic scale, shift."""
    angle = np.radians(rng.uniform(-15, 15))
    shear = rng.uniform(-0.3, 0.3)
    sx, sy = rng.uniform(0.6, 0.95), rng.uniform(0.65, 0.95)
    c, s = np.cos(angle), np.sin(angle)
    m = np.array([[c, -s], [s, c]]) @ np.array([[1, shear], [0, 1]]) @ np.diag([sx, sy])
    shift = rng.uniform(-0.08, 0.08, size=2)
    return m, shift


def make_image(seed, index, digit=None):
    """Image ``index`` of set ``seed``: (uint8 28x28 array, digit)."""
    rng = np.random.RandomState([seed & 0xFFFFFFFF, index & 0xFFFFFFFF])
    if digit is None:
        digit = int(rng.randint(10))
    m, shift = _affine(rng)
    big = SIZE * SCALE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    width = int(round(rng.uniform(1.3, 3.2) * SCALE))
    for stroke in STROKES[digit]:
        pts = np.asarray(stroke, np.float64) + rng.normal(0, 0.02, size=(len(stroke), 2))
        pts = (pts - 0.5) @ m.T + 0.5 + shift
        xy = [(float(x * big), float(y * big)) for x, y in pts]
        draw.line(xy, fill=255, width=width, joint="curve")
        r = width / 2.0  # round caps
        for x, y in (xy[0], xy[-1]):
            draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
    canvas = canvas.filter(ImageFilter.GaussianBlur(radius=SCALE * 0.4))
    img = np.asarray(canvas.resize((SIZE, SIZE), Image.BOX), np.float32)
    ink, paper = rng.uniform(170, 255), rng.uniform(0, 40)
    img = paper + img * (ink - paper) / 255.0
    img = img + rng.normal(0, rng.uniform(0, 12), size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), digit


def generate(n, seed):
    """``n`` images of set ``seed``: (uint8 [n, 28, 28], int64 [n] digits)."""
    images = np.empty((n, SIZE, SIZE), np.uint8)
    digits = np.empty(n, np.int64)
    for i in range(n):
        images[i], digits[i] = make_image(seed, i)
    return images, digits


def generate_balanced(per_class, seed):
    """``per_class`` images of each digit (image i shows digit i % 10): small sets that cover
    every class, for the committed eval and calibration folders."""
    n = per_class * len(LABELS)
    images = np.empty((n, SIZE, SIZE), np.uint8)
    digits = np.arange(n) % len(LABELS)
    for i in range(n):
        images[i], _ = make_image(seed, i, int(digits[i]))
    return images, digits
