# lcd stand-in (MaixPy-v1 components/micropython/port/src/omv/py/py_lcd.c): colours are
# byte-swapped RGB565; display() keeps a count and the last image for the test.
RED = 0x00F8
GREEN = 0xE007
BLUE = 0x1F00
BLACK = 0
WHITE = 0xFFFF
shown = 0
last = None
texts = []


def init(*args, **kwargs):
    pass


def width():
    return 320


def height():
    return 240


def display(img, *args, **kwargs):
    global shown, last
    shown += 1
    last = img


def draw_string(x, y, text, color=RED, bg=BLACK):
    texts.append(text)


def clear(color=BLACK):
    pass
