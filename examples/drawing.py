"""Drawing shared by the shapes classifier and the segnet scenes (Pillow + numpy):
textured backgrounds, the six shapes (an image and its mask drawn alike), contrasting
colours, lighting and noise. Every function draws from the ``rng`` it is given.
"""
import numpy as np
from PIL import Image

def random_colour(rng):
    return tuple(int(v) for v in rng.randint(0, 256, size=3))


def background(rng, size):
    """Gradient between two colours plus a texture, float HxWx3."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    c0, c1 = np.array(random_colour(rng), np.float32), np.array(random_colour(rng), np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = xs * np.cos(angle) + ys * np.sin(angle) + 0.5
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    kind = rng.randint(4)
    amp = rng.uniform(10, 45)
    if kind == 0:  # stripes
        period, a = rng.uniform(4, 14), rng.uniform(0, np.pi)
        tex = np.sign(np.sin((xs * np.cos(a) + ys * np.sin(a)) * size * 2 * np.pi / period))
    elif kind == 1:  # checks
        cell = rng.randint(4, 12)
        tex = ((np.arange(size)[:, None] // cell + np.arange(size)[None, :] // cell) % 2) * 2 - 1.0
    elif kind == 2:  # blotches: coarse noise upsampled
        coarse = rng.uniform(-1, 1, size=(6, 6)).astype(np.float32)
        tex = np.asarray(Image.fromarray(coarse, "F").resize((size, size), Image.BICUBIC))
    else:
        tex = rng.uniform(-1, 1, size=(size, size))
    return img + amp * np.asarray(tex, np.float32)[..., None]


def shape_polygon(kind, cx, cy, r, angle):
    """Outline points of ``kind`` (square, triangle, star or cross) around (cx, cy)."""
    if kind == "square":
        ang = angle + np.arange(4) * np.pi / 2 + np.pi / 4
        rad = np.full(4, r)
    elif kind == "triangle":
        ang = angle + np.arange(3) * 2 * np.pi / 3
        rad = np.full(3, r)
    elif kind == "star":
        ang = angle + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
    else:  # cross: 12 corners of a plus sign of arm half-width r/3
        w = r / 3.0
        local = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r), (-w, -r), (-w, -w),
                 (-r, -w), (-r, w), (-w, w), (-w, r)]
        c, s = np.cos(angle), np.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in local]
    return [(float(cx + q * np.cos(a)), float(cy + q * np.sin(a))) for q, a in zip(rad, ang)]


def draw_shape(draws, fills, kind, cx, cy, r, angle):
    """Draw ``kind`` on every ImageDraw in ``draws`` with the matching fill (an image and
    its mask are drawn alike)."""
    box = [cx - r, cy - r, cx + r, cy + r]
    for draw, fill in zip(draws, fills):
        if kind == "circle":
            draw.ellipse(box, fill=fill)
        elif kind == "ring":
            draw.ellipse(box, outline=fill, width=max(2, int(r * 0.35)))
        else:
            draw.polygon(shape_polygon(kind, cx, cy, r, angle), fill=fill)


def contrasting_colour(rng, under):
    """A random colour at least 90 (L1 per channel mean x3) from the mean colour ``under``."""
    for _ in range(50):
        colour = random_colour(rng)
        if np.abs(np.array(colour, np.float32) - under).sum() > 270:
            return colour
    return tuple(int(255 - v) for v in under)


def finish(rng, img):
    """Lighting (gain, colour cast) and sensor noise; float HxWx3 -> uint8."""
    img = img * rng.uniform(0.7, 1.2) * rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    img = img + rng.normal(0, rng.uniform(0, 6), size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)
