"""`lcd`: a 320x240 screen whose frames are saved as DIR/lcd/NNNN.png (the last KEEP)."""
import os

from host.vboard.image import Image
from host.vboard.shims.base import new_module

KEEP = 50
WIDTH, HEIGHT = 320, 240


class _Screen:
    def __init__(self, state_dir):
        self.dir = os.path.join(state_dir, "lcd")
        os.makedirs(self.dir, exist_ok=True)
        existing = [int(n[:-4]) for n in os.listdir(self.dir)
                    if n.endswith(".png") and n[:-4].isdigit()]
        self.count = max(existing) + 1 if existing else 0

    def show(self, img):
        path = os.path.join(self.dir, "%04d.png" % self.count)
        img.to_pil().save(path + ".tmp", "PNG")
        os.replace(path + ".tmp", path)
        old = os.path.join(self.dir, "%04d.png" % (self.count - KEEP))
        if os.path.exists(old):
            os.remove(old)
        self.count += 1


def build(board):
    def screen():
        if board.session.lcd is None:
            board.session.lcd = _Screen(board.state_dir)
        return board.session.lcd

    def init(*args, **kwargs):
        screen()

    def display(img, roi=None, oft=None):
        if not isinstance(img, Image):
            raise TypeError("expected an image")
        screen().show(img if roi is None else img.copy(roi))

    def clear(color=0):
        screen().show(Image(size=(WIDTH, HEIGHT)))

    def draw_string(x, y, text, color=0xFFFF, bg=0):
        img = Image(size=(WIDTH, HEIGHT))
        img.draw_string(x, y, text, color=color)
        screen().show(img)

    def noop(*args, **kwargs):
        return None

    return new_module("lcd", init=init, display=display, clear=clear, draw_string=draw_string,
                      rotation=noop, mirror=noop, direction=noop, freq=noop,
                      width=lambda: WIDTH, height=lambda: HEIGHT,
                      WHITE=0xFFFF, BLACK=0, RED=0xF800, GREEN=0x07E0, BLUE=0x001F)
