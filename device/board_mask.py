# The board's segmentation masks (decoder segment, docs/model-kinds.md): the argmax mask of
# output 0 written into the session's mask buffers, made once with the image place (as the
# RESULT buffers: docs/design.md "Board memory"), RESULT_CACHE of them, one per set of result
# buffers, so a RESULT kept for RESEND keeps its mask. MicroPython 1.11 dialect.
try:
    import decoders
except ImportError:
    from device import decoders


class Masks:
    def __init__(self, cfg, count):
        self.params = cfg["decoder"]
        self.shape = cfg["outputs"][0]["shape"]
        self.count = count
        self.bufs = None

    def allocate(self):
        if self.bufs is None:
            n = self.shape[1] * self.shape[2]
            self.bufs = [bytearray(n) for _ in range(self.count)]

    def make(self, out, slot):
        """(h, w, class id bytes) of one output into mask buffer `slot` (the RESULT's set of
        result buffers, server.Server.result_slot): protocol.pack_result_parts' mask."""
        self.allocate()
        buf = self.bufs[slot]
        decoders.segment_mask(out, self.shape, self.params, buf)
        return (self.shape[1], self.shape[2], buf)
