"""Deterministic scenes for the example segmentation net: 64x64 RGB, 16x16 class masks.

A scene: a textured background (examples/drawing.py), a few clutter lines, 1-3 shapes
(circle, square or triangle; radius 8-20 px, random rotation, contrasting colours; later
shapes cover earlier ones), lighting and noise. The mask is drawn alike at 64x64 (class 0
background, 1 + the shape's index in SHAPES) and reduced to the net's 16x16 output by a
majority vote in each 4x4 block. Image ``i`` of seed ``s`` comes from ``RandomState([s, i])``.
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
STRIDE = 4  # output cell size in input pixels
OUT = SIZE // STRIDE
SHAPES = ["circle", "square", "triangle"]
LABELS = ["background"] + SHAPES
COLORS = [[0, 0, 0], [230, 60, 60], [60, 200, 80], [70, 110, 240]]  # overlay colours
TRAIN_SEED, EVAL_SEED, CALIB_SEED = 1300, 3300, 4300


def reduce_mask(mask):
    """64x64 class ids -> 16x16: the most frequent class of each 4x4 block (ties: lowest)."""
    onehot = np.eye(len(LABELS), dtype=np.int32)[mask]
    votes = onehot.reshape(OUT, STRIDE, OUT, STRIDE, len(LABELS)).sum(axis=(1, 3))
    return np.argmax(votes, axis=-1).astype(np.uint8)


def make_scene(seed, index):
    """Scene ``index`` of set ``seed``: (uint8 64x64x3 image, uint8 16x16 class mask)."""
    rng = np.random.RandomState([seed & 0xFFFFFFFF, index & 0xFFFFFFFF])
    bg = background(rng, SIZE)
    base = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
    mask = Image.new("L", (SIZE, SIZE), 0)
    draw, mask_draw = ImageDraw.Draw(base), ImageDraw.Draw(mask)
    for _ in range(rng.randint(0, 4)):
        x0, y0, x1, y1 = (int(v) for v in rng.randint(0, SIZE, size=4))
        draw.line([x0, y0, x1, y1], fill=random_colour(rng), width=1)
    for _ in range(rng.randint(1, 4)):
        kind = int(rng.randint(len(SHAPES)))
        r = rng.uniform(8, 20)
        cx, cy = rng.uniform(r * 0.5, SIZE - r * 0.5, size=2)
        y0, y1, x0, x1 = (int(max(0, cy - r)), int(min(SIZE, cy + r)),
                          int(max(0, cx - r)), int(min(SIZE, cx + r)))
        colour = contrasting_colour(rng, bg[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0))
        draw_shape([draw, mask_draw], [colour, kind + 1], SHAPES[kind], cx, cy, r,
                   rng.uniform(0, 2 * np.pi))
    image = finish(rng, np.asarray(base, np.float32))
    return image, reduce_mask(np.asarray(mask))


def generate(n, seed):
    images = np.empty((n, SIZE, SIZE, 3), np.uint8)
    masks = np.empty((n, OUT, OUT), np.uint8)
    for i in range(n):
        images[i], masks[i] = make_scene(seed, i)
    return images, masks
