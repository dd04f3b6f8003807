"""`lcd`: a 320x240 screen whose frames are saved as DIR/lcd/NNNN.png (the last KEEP).
Follows sipeed/MaixPy-v1 components/micropython/port/src/omv/py/py_lcd.c."""
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
        self.frame = None           # what the screen shows now (draw_string draws on it)

    def show(self, img):
        path = os.path.join(self.dir, "%04d.png" % self.count)
        img.to_pil().save(path + ".tmp", "PNG")
        os.replace(path + ".tmp", path)
        old = os.path.join(self.dir, "%04d.png" % (self.count - KEEP))
        if os.path.exists(old):
            os.remove(old)
        self.count += 1


# sipeed/MaixPy-v1 components/drivers/lcd/include/lcd.h: the colours are RGB565 with
# their bytes swapped (LCD_SWAP_COLOR_BYTES), as py_lcd.c: globals_dict_table exports them
COLORS = {"BLACK": 0x0000, "NAVY": 0x0F00, "DARKGREEN": 0xE003, "DARKCYAN": 0xEF03,
          "MAROON": 0x0078, "PURPLE": 0x0F78, "OLIVE": 0xE07B, "LIGHTGREY": 0x18C6,
          "DARKGREY": 0xEF7B, "BLUE": 0x1F00, "GREEN": 0xE007, "CYAN": 0xFF07,
          "RED": 0x00F8, "MAGENTA": 0x1FF8, "YELLOW": 0xE0FF, "WHITE": 0xFFFF,
          "ORANGE": 0x20FD, "GREENYELLOW": 0xE5AF, "PINK": 0x1FF8}


def _rgb565(lcd_color):
    """An lcd colour value -> the RGB565 pixel it shows."""
    return ((lcd_color & 0xFF) << 8) | ((lcd_color >> 8) & 0xFF)


def build(board):
    def screen():
        if board.session.lcd is None:
            board.session.lcd = _Screen(board.state_dir)
        return board.session.lcd

    def frame():
        scr = screen()
        if scr.frame is None:
            scr.frame = Image(size=(WIDTH, HEIGHT))
        return scr.frame

    def init(*args, **kwargs):
        # py_lcd.c: py_lcd_init
        screen()

    def display(img, roi=None, oft=None):
        # py_lcd.c: py_lcd_display
        if not isinstance(img, Image):
            raise TypeError("expected an image")
        shown = img if roi is None else img.copy(roi)
        screen().frame = shown.copy()
        screen().show(shown)

    def clear(color=0):
        # py_lcd.c: py_lcd_clear (colour in the lcd.h byte order)
        img = Image(size=(WIDTH, HEIGHT))
        img.draw_rectangle(0, 0, WIDTH, HEIGHT, color=_rgb565(color), fill=True)
        screen().frame = img
        screen().show(img)

    def draw_string(x, y, text, *colors):
        # py_lcd.c: py_lcd_draw_string(x, y, str[, fontc=RED[, bgc=BLACK]]), positional
        # only; 8x12 pixel cells straight onto the screen (the rest of it stays)
        fontc = colors[0] if len(colors) > 0 else COLORS["RED"]
        bgc = colors[1] if len(colors) > 1 else COLORS["BLACK"]
        n = min(len(text), (WIDTH - x) // 8)
        if n <= 0 or y > WIDTH - 16:
            return None
        img = frame()
        img.draw_rectangle(x, y, n * 8, 12, color=_rgb565(bgc), fill=True)
        img.draw_string(x, y, text[:n], color=_rgb565(fontc))
        screen().show(img)
        return None

    def noop(*args, **kwargs):
        # py_lcd.c: py_lcd_rotation / py_lcd_mirror / py_lcd_direction / py_lcd_freq
        return None

    return new_module("lcd", init=init, display=display, clear=clear, draw_string=draw_string,
                      rotation=noop, mirror=noop, direction=noop, freq=noop,
                      width=lambda: WIDTH, height=lambda: HEIGHT, **COLORS)
