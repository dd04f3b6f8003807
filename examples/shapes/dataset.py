"""Deterministic coloured shapes on textured backgrounds (Pillow), 64x64 RGB.

An image: a background (colour gradient plus one texture: stripes, checks, blotches or
noise), a few thin clutter lines, then one shape of one of six classes (size 24-56 px,
random rotation and position, a colour far enough from the background around it), lighting
(gain, colour cast) and pixel noise. Image ``i`` of seed ``s`` comes from
``RandomState([s, i])``: sets with different seeds are disjoint.
"""
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

EXAMPLES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if EXAMPLES not in sys.path:
    sys.path.insert(0, EXAMPLES)

from drawing import (background, contrasting_colour, draw_shape, finish,  # noqa: E402
                     random_colour)

SIZE = 64
LABELS = ["circle", "square", "triangle", "star", "cross", "ring"]
TRAIN_SEED, EVAL_SEED, CALIB_SEED = 1200, 3200, 4200


def make_image(seed, index, label=None):
    """Image ``index`` of set ``seed``: (uint8 64x64x3, class id)."""
    rng = np.random.RandomState([seed & 0xFFFFFFFF, index & 0xFFFFFFFF])
    if label is None:
        label = int(rng.randint(len(LABELS)))
    bg = background(rng, SIZE)
    base = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(base)
    for _ in range(rng.randint(0, 4)):
        x0, y0, x1, y1 = (int(v) for v in rng.randint(0, SIZE, size=4))
        draw.line([x0, y0, x1, y1], fill=random_colour(rng), width=1)
    r = rng.uniform(12, 28)
    cx, cy = rng.uniform(r * 0.8, SIZE - r * 0.8, size=2)
    y0, y1, x0, x1 = (int(max(0, cy - r)), int(min(SIZE, cy + r)),
                      int(max(0, cx - r)), int(min(SIZE, cx + r)))
    colour = contrasting_colour(rng, bg[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0))
    draw_shape([draw], [colour], LABELS[label], cx, cy, r, rng.uniform(0, 2 * np.pi))
    return finish(rng, np.asarray(base, np.float32)), label


def generate(n, seed):
    images = np.empty((n, SIZE, SIZE, 3), np.uint8)
    labels = np.empty(n, np.int64)
    for i in range(n):
        images[i], labels[i] = make_image(seed, i)
    return images, labels


def generate_balanced(per_class, seed):
    n = per_class * len(LABELS)
    images = np.empty((n, SIZE, SIZE, 3), np.uint8)
    labels = np.arange(n) % len(LABELS)
    for i in range(n):
        images[i], _ = make_image(seed, i, int(labels[i]))
    return images, labels
