"""Natural photographs for the rgb565z link rows (issue 13), written as PNG (lossless) at the
model input size 320x224: views of the two photographs scipy 1.5.4 ships in its wheel
(scipy/misc/face.dat, ascent.dat; pinned in requirements.txt, nothing downloaded). Both are
public domain (scipy.misc docstrings: from public-domain-image.com): `face` a 1024x768 colour
photograph of a raccoon, fur and foliage (hard to compress), `ascent` a 512x512 grey
photograph of people climbing stairs (smooth walls, easy), sent as RGB.

  python bench/photos.py DIR      # writes DIR/*.png
"""
import os
import sys

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 320, 224


def views():
    """(name, PIL image at WIDTH x HEIGHT)."""
    from scipy import misc
    face = Image.fromarray(misc.face())
    ascent = Image.fromarray(np.stack([misc.ascent().astype(np.uint8)] * 3, axis=-1))
    size = (WIDTH, HEIGHT)
    return [
        ("face-whole", face.resize(size, Image.BILINEAR)),
        ("face-eyes", face.crop((352, 272, 672, 496))),                   # 1:1 pixels
        ("face-left", face.crop((0, 100, 640, 548)).resize(size, Image.BILINEAR)),
        ("face-lower", face.crop((384, 320, 1024, 768)).resize(size, Image.BILINEAR)),
        ("ascent-whole", ascent.crop((0, 76, 512, 434)).resize(size, Image.BILINEAR)),
        ("ascent-stairs", ascent.crop((96, 200, 416, 424))),             # 1:1 pixels
    ]


def write(directory):
    os.makedirs(directory, exist_ok=True)
    names = []
    for name, im in views():
        path = os.path.join(directory, name + ".png")
        im.convert("RGB").save(path)
        names.append(path)
    return names


if __name__ == "__main__":
    print("\n".join(write(sys.argv[1])))
