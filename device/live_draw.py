# Live mode's drawing for the classify and segment decoders (docs/model-kinds.md): the top-1
# label and score, or the argmax mask in class colours over the frame. MicroPython 1.11
# dialect. Only image methods the firmware has: draw_string and draw_rectangle with fill
# (sipeed/MaixPy-v1 omv/py/py_image.c: py_image_draw_string, py_image_draw_rectangle).
try:
    import decoders
except ImportError:
    from device import decoders

LABEL_COLOR = (255, 255, 0)


class LiveDraw:
    """draw(img, outs, records) for a classify or segment config; the mask buffer is made
    once (the live loop runs frame after frame in the GC heap)."""

    def __init__(self, cfg):
        self.d = cfg["decoder"]
        self.kind = self.d["type"]
        self.labels = self.d.get("labels") or []
        self.colors = self.d.get("colors") or []
        self.shape = cfg["outputs"][0]["shape"]
        self.w = cfg["input"]["width"]
        self.h = cfg["input"]["height"]
        self.mask = None

    def draw(self, img, outs, records):
        if self.kind == "classify":
            self.top1(img, records)
        else:
            self.segment(img, outs[0])

    def top1(self, img, records):
        if not records:
            return
        c = int(records[0][5])
        name = self.labels[c] if c < len(self.labels) else str(c)
        img.draw_string(2, 14, "%s %.2f" % (name, records[0][4]), color=LABEL_COLOR, scale=2)

    def segment(self, img, out):
        """The mask scaled to the frame, one filled rectangle per run of equal class ids in a
        mask row; class 0 (background) and all-NaN pixels are left as the camera saw them."""
        mh = self.shape[1]
        mw = self.shape[2]
        if self.mask is None:
            self.mask = bytearray(mh * mw)
        mask = decoders.segment_mask(out, self.shape, self.d, self.mask)
        for r in range(mh):
            y0 = r * self.h // mh
            y1 = (r + 1) * self.h // mh
            col = 0
            while col < mw:
                c = mask[r * mw + col]
                end = col + 1
                while end < mw and mask[r * mw + end] == c:
                    end += 1
                if c != 0 and c < len(self.colors):
                    x0 = col * self.w // mw
                    x1 = end * self.w // mw
                    img.draw_rectangle(x0, y0, x1 - x0, y1 - y0,
                                       color=tuple(self.colors[c]), fill=True)
                col = end
