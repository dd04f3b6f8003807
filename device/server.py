# The serial-eval server of serve mode (docs/protocol.md): frames in from the REPL UART,
# images into the firmware's Image, the KPU run, RESULT frames out. MicroPython 1.11
# dialect; firmware modules are imported lazily.
import gc
import sys

try:
    import utime as time
except ImportError:  # pragma: no cover - the board always has utime
    import time
try:
    import protocol
except ImportError:
    from device import protocol
try:
    import payloads
except ImportError:
    from device import payloads
try:
    from kpu_model import decode_boxes, err_text, maix_utils
except ImportError:
    from device.kpu_model import decode_boxes, err_text, maix_utils
try:
    from pixel_views import fill_rows, rgb565_view
except ImportError:
    from device.pixel_views import fill_rows, rgb565_view
try:
    import image_place
except ImportError:
    from device import image_place
try:
    from clock import since, ticks
except ImportError:
    from device.clock import since, ticks

P = protocol

RESULT_CACHE = 2    # RESULTs kept for RESEND (docs/protocol.md, "Recovery")
BOX_STEP = 16       # box records' buffers grow by this many boxes (Server.box_buffer)


def mem_free():
    try:
        return gc.mem_free()
    except Exception:
        return 0


# ------------------------------------------------------------------ serve
class Transfer:
    def __init__(self, image_id, fmt, flags, w, h, total):
        self.id = image_id
        self.fmt = fmt
        self.flags = flags
        self.w = w
        self.h = h
        self.total = total
        self.got = 0
        self.fail = None     # (code, text): consume the data, then one ERROR
        self.z = None        # rgb565z: its zinflate.Inflater while it fills the Image
        self.t0 = ticks()


class Server:
    """The serial-eval server. uart: object with any(), readinto(buf), write(buf)."""

    def __init__(self, cfg, uart, model):
        self.cfg = cfg
        self.uart = uart
        self.model = model
        self.rbl = cfg["read_buf_len"]
        self.window = P.window_for(self.rbl)
        self.chunk = P.chunk_for(self.window)
        self.parser = P.Parser(max_payload=max(P.DEVICE_MAX_PAYLOAD, self.chunk + 8))
        self.ack_step = self.window // 4
        self.consumed = 0
        self.base = 0
        self.acked = 0
        self.seq = 0
        self.w = cfg["input"]["width"]
        self.h = cfg["input"]["height"]
        self.gray = cfg["input"].get("channels", 3) == 1   # GRAYSCALE place, gray8 only
        # The session's big buffers, allocated once and reused for every image (docs/design.md
        # "Board memory"): per-image blocks of 100s of KB fragment the first-fit GC heap. The
        # JPEG buffer and the inflater give their room to the KPU's output list and are made
        # again right after it (payloads.remake).
        self.img = None          # the image place: an RGB565 (GRAYSCALE) Image of the input, and
        self.view = None         # its pix_ai planes (raw_image, or the last decoded JPEG)
        self.jpeg = None         # JPEG buffer from IMAGE_BEGIN to the decode: bytes, JPEG at
        self.jpeg_w = None       # its start; a writable view of it (uctypes), or the bytearray
        self.jpeg_cap = 0        # its size: the largest the session's JPEGs needed
        self.z = None            # rgb565z: the next image's zinflate.Inflater, made in advance
        self.slots = None        # RESULT_CACHE sets of output float32 buffers (pack_outputs)
        self.box_bufs = [b""] * RESULT_CACHE   # and of box records (box_buffer)
        self.masks = None        # segment: the session's mask buffers (board_mask.Masks)
        if cfg["decoder"]["type"] == "segment":
            try:     # only a segment model loads it (GC heap: docs/design.md "Board memory")
                from board_mask import Masks
            except ImportError:
                from device.board_mask import Masks
            self.masks = Masks(cfg, RESULT_CACHE)
        self.cur = None
        self.ready = None        # a received image waiting for run_ready()
        self.dead = None
        self.running = True
        self.crc_mode = cfg.get("input_crc", "auto")
        self.rowbuf = None
        self.images = 0
        self.write = uart.write
        self.baud = cfg["baud"]
        self.last_seq = 0        # seq of the last host frame parsed intact (ACK)
        self.in_session = False  # a HELLO seen: frames before it belong to a session of
        #                          a board life before this one (the board reset)
        self.last_done = None    # id of the last image that got its reply
        self.cache = []          # [(image id, RESULT payload parts, its set of result
        #                          buffers)], newest last
        self.nacked = 0          # parser.dropped() already reported
        self.idle_t0 = None      # when a partial frame at the parser head stopped growing

    # -- output
    def send(self, ftype, parts):
        P.send(self.write, ftype, self.seq, parts)
        self.seq = (self.seq + 1) & 0xFFFF

    def error(self, code, ref, text):
        self.send(P.T_ERROR, [P.pack_error(code, ref, text)])

    def log(self, text):
        self.send(P.T_LOG, [str(text).encode("utf-8")])

    def ack(self):
        if self.in_session and self.consumed != self.acked:
            self.acked = self.consumed
            self.send(P.T_ACK, [P.pack_ack(self.consumed - self.base, self.last_seq)])

    def info(self):
        d = {"proto": P.VERSION, "firmware": self.cfg.get("firmware"),
             "api": self.model.api, "model_loaded": self.model.loaded(),
             "load_error": self.model.error,
             "kmodel_version": self.cfg["model"].get("version"),
             "model_sha256": self.cfg["model"].get("sha256"),
             "model_source": self.cfg["model"]["source"],
             "input": [self.w, self.h],
             "outputs": [o["shape"] for o in self.cfg["outputs"]],
             "decoder": self.cfg["decoder"]["type"],
             "rx_buf": self.rbl, "window": self.window, "chunk": self.chunk,
             "max_payload": self.parser.max_payload, "baud": self.cfg["baud"],
             "formats": payloads.formats(self), "input_crc": self.crc_mode,
             "features": P.FEATURES, "result_cache": RESULT_CACHE,
             "mem_free": mem_free(), "platform": sys.platform,
             "uptime_ms": ticks()}
        utils = maix_utils()
        try:
            d["heap_free"] = utils.heap_free()
        except Exception:
            pass
        return d

    # -- input
    def poll(self):
        """Drain the UART, handle frames, acknowledge. Returns bytes read.
        A partial frame that stops growing for longer than its line time (a truncated
        frame) is dropped; dropped frames are answered with one ERROR crc (NACK)."""
        k = self.uart.any()
        n = 0
        if k:
            room = self.parser.free()
            if k > len(room):
                k = len(room)
            if k:
                n = self.uart.readinto(room[0:k]) or 0
                self.parser.commit(n)
                self.consumed += n
        if n:
            self.idle_t0 = None
        elif self.parser.want:
            if self.idle_t0 is None:
                self.idle_t0 = ticks()
            elif self.parser.stale(since(self.idle_t0), self.baud):
                self.parser.rescan()
                self.idle_t0 = None
        while self.running and self.ready is None:
            f = self.parser.next()
            if f is None:
                break
            self.handle(f[0], f[1], f[2])
        if self.ready is not None:
            self.run_ready()
        dropped = self.parser.dropped()
        if dropped != self.nacked and self.running:
            self.error(P.E_CRC, self.cur.id if self.cur is not None else 0,
                       "%d frame(s) failed their check (last good host frame %d)"
                       % ((dropped - self.nacked) & 0xFFFFFFFF, self.last_seq))
            self.nacked = dropped
        if self.consumed - self.acked >= self.ack_step or (n == 0 and self.consumed != self.acked):
            self.ack()
        return n

    def loop(self):
        while self.running:
            if not self.poll():
                time.sleep_ms(1)

    def handle(self, ftype, seq, payload):
        """One intact frame. Never raises: anything wrong becomes an ERROR frame."""
        self.last_seq = seq
        if self.parser.version != P.VERSION:
            self.error(P.E_VERSION, 0, "board speaks protocol %d, frame is version %d"
                       % (P.VERSION, self.parser.version))
            return
        if not self.in_session and ftype not in (P.T_HELLO, P.T_EXIT):
            # the host speaks to a board that has restarted: say so, so that it starts a
            # new session (HELLO) instead of feeding a transfer this board never began
            self.error(P.E_NO_SESSION, 0, "no session: serve mode started without a HELLO "
                       "since (the board restarted)")
            return
        try:
            if ftype == P.T_IMAGE_DATA:
                self.on_data(payload)
            elif ftype == P.T_IMAGE_BEGIN:
                self.on_begin(payload)
            elif ftype == P.T_HELLO:
                self.in_session = True
                self.cur = None         # a new session: ids start again
                self.last_done = None
                self.dead = None
                self.cache = []
                self.base = self.consumed - self.parser.buffered()
                self.acked = self.consumed
                self.send(P.T_INFO, [P.pack_json(self.info())])
            elif ftype == P.T_RESEND:
                self.on_resend(P.unpack_resend(payload))
            elif ftype == P.T_EXIT:
                self.send(P.T_BYE, [])
                self.running = False
            elif ftype in P.TYPE_NAMES:
                self.error(P.E_STATE, 0, "frame type %s is not for the board"
                           % P.TYPE_NAMES[ftype])
            else:
                self.error(P.E_UNKNOWN_TYPE, 0, "unknown frame type 0x%02x" % ftype)
        except P.ProtocolError as e:
            self.error(P.E_BAD_PAYLOAD, 0, str(e))
        except MemoryError as e:
            self.cur = None
            gc.collect()
            self.error(P.E_NO_MEMORY, 0, err_text(e))
        except Exception as e:
            self.cur = None
            self.error(P.E_INTERNAL, 0, err_text(e))

    def on_resend(self, image_id):
        for cid, parts, _slot in self.cache:
            if cid == image_id:
                self.send(P.T_RESULT, parts)
                return
        t = self.cur
        if t is not None and t.id == image_id:
            why = "image %d is incomplete (%d of %d bytes)" % (image_id, t.got, t.total)
        else:
            why = "no result for image %d" % image_id
        self.error(P.E_NO_RESULT, image_id, why)

    def on_begin(self, payload):
        image_id, fmt, flags, w, h, total = P.unpack_image_begin(payload)
        if (self.cur is not None and self.cur.id == image_id) or \
                (self.cur is None and image_id == self.last_done):
            return   # a duplicated frame: the transfer (or its reply) exists already
        if self.cur is not None:
            self.error(P.E_STATE, self.cur.id, "image %d abandoned at %d of %d bytes"
                       % (self.cur.id, self.cur.got, self.cur.total))
        t = Transfer(image_id, fmt, flags, w, h, total)
        self.cur = t
        self.dead = None
        if not self.model.loaded():
            t.fail = (P.E_MODEL_LOAD, self.model.error)
        elif self.gray or fmt == P.FMT_GRAY8:
            image_place.begin(self, t)
        elif fmt == P.FMT_RGB565:
            if w != self.w or h != self.h or total != 2 * w * h:
                t.fail = (P.E_SIZE, "image %dx%d (%d bytes), model input is %dx%d (%d bytes)"
                          % (w, h, total, self.w, self.h, 2 * self.w * self.h))
            else:
                try:
                    self.raw_image()
                except MemoryError as e:
                    t.fail = (P.E_NO_MEMORY, "RGB565 image buffer: " + err_text(e))
        elif fmt == P.FMT_RGB565Z:
            payloads.begin_rgb565z(self, t)
        elif fmt == P.FMT_JPEG:
            payloads.begin_jpeg(self, t)
        else:
            t.fail = (P.E_FORMAT, "unknown image format %d" % fmt)
        if total == 0:
            self.finish()

    def raw_image(self):
        """The image place: an RGB565 Image of the model input and its pix_ai planes, made
        once (and the result buffers after it). Image(size=) xallocs the pixels (GC heap)
        and pix_to_ai() allocates the planes on its first call only (py_image.c:
        py_image_pix_to_ai reuses img->pix_ai), so every later image reuses both."""
        if self.img is None:
            import image
            gc.collect()
            if self.gray:
                img = image_place.gray_image(self.w, self.h)
            else:
                img = image.Image(size=(self.w, self.h))
            img.pix_to_ai()
            self.img = img
            self.view = rgb565_view(img, (1 if self.gray else 2) * self.w * self.h)
        if self.slots is None:
            self.slots = self.result_buffers()
            if self.masks is not None:
                self.masks.allocate()
        return self.img

    def run_kpu(self, t, img):
        """The KPU run on `img` and its outputs copied into the next RESULT's set of result
        buffers: (the outputs the decoder reads, their byte views or None, the set, KPU ms),
        None after an ERROR. A frame of its own: the KPU's list of float objects never sits
        in infer's frame, where a stale slot kept it (84 KB, and the decoder's room cut up)
        through the (conservative) collection meant to free it."""
        t_kpu = ticks()
        try:
            outs = self.model.run(img)
        except MemoryError:
            raise
        except Exception as e:
            self.error(P.E_KPU_RUN, t.id, err_text(e))
            return None
        kpu_ms = since(t_kpu)
        slot = self.result_slot()
        packed = self.pack_outputs(outs, slot)
        if packed is None:
            return outs, None, slot, kpu_ms
        return packed[0], packed[1], slot, kpu_ms

    def decode(self, t, outs, slot):
        """(box records in set `slot`'s box buffer, a segment model's mask, whether the
        decoder failed) of image `t`'s packed outputs. A frame of its own: the decoder's
        lists and tuples never sit in infer's frame, which the (conservative) collection
        before the RESULT is built scans."""
        boxes = []
        mask = None
        failed = False
        if not (t.flags & P.F_NO_BOXES):
            try:
                boxes = decode_boxes(self.cfg, outs)
                if self.masks is not None:
                    mask = self.masks.make(outs[0], slot)
            except Exception as e:
                failed = True
                self.log("image %d: decoder failed: %s" % (t.id, err_text(e)))
        return P.pack_boxes(boxes, self.box_buffer(slot, len(boxes))), mask, failed

    def result_slot(self):
        """The set of result buffers (and mask) the next RESULT takes: one no kept RESULT
        uses, else the oldest kept RESULT's, which is no longer kept. RESULT_CACHE sets, as
        many as RESULTs kept for RESEND: the RESULT being made replaces the oldest."""
        used = [c[2] for c in self.cache]
        for slot in range(RESULT_CACHE):
            if slot not in used:
                return slot
        return self.cache.pop(0)[2]

    def pack_outputs(self, outs, slot):
        """The outputs copied into the session's result buffers `slot` (result_buffers):
        (arrays, their byte views), or None where there are none (pack_result_parts packs
        the outputs itself)."""
        if not self.slots:
            return None
        arrays, views = self.slots[slot]
        for k in range(len(outs)):
            a = arrays[k]
            v = outs[k]
            for i in range(len(a)):
                a[i] = v[i]
        return arrays, views

    def box_buffer(self, slot, n):
        """The box records' buffer of set `slot`, grown (BOX_STEP boxes at a time, so rarely)
        to hold n: a RESULT's boxes, kept for RESEND, make no new block of ~1 KB that would
        land where the next image's JPEG buffer or inflater goes."""
        if len(self.box_bufs[slot]) < P.BOX_LEN * n:
            size = P.BOX_LEN * ((n + BOX_STEP - 1) // BOX_STEP * BOX_STEP)
            self.box_bufs[slot] = b""     # no kept RESULT uses it (result_slot): its room too
            try:
                buf = bytearray(size)
            except MemoryError:
                payloads.drop(self)     # the next image's buffer gives way (payloads.remake)
                gc.collect()
                buf = bytearray(size)
            self.box_bufs[slot] = buf
        return self.box_bufs[slot]

    def result_buffers(self):
        """RESULT_CACHE sets of one array('f') per output, made once with the image place and
        sent through uctypes byte views: the RESULTs kept for RESEND keep theirs, and no image
        makes new 8 KB blocks (docs/design.md "Board memory"). [] without array or uctypes:
        each RESULT then packs its own bytes."""
        try:
            from array import array
            import uctypes
        except ImportError:
            return []
        sets = []
        for _ in range(RESULT_CACHE):
            arrays = [array("f", range(s[0] * s[1] * s[2])) for s in self.model.shapes]
            try:
                views = [uctypes.bytearray_at(uctypes.addressof(a), 4 * len(a)) for a in arrays]
            except TypeError:       # an array without the buffer protocol (virtual board)
                return []
            sets.append((arrays, views))
        return sets

    def on_data(self, payload):
        image_id, off, data = P.unpack_image_data(payload)
        t = self.cur
        if t is None or t.id != image_id:
            if self.dead != image_id and self.last_done != image_id:
                self.dead = image_id
                self.error(P.E_STATE, image_id, "data for image %d without IMAGE_BEGIN" % image_id)
            return
        n = len(data)
        if off + n <= t.got:
            return   # a duplicated chunk: those bytes are here already
        if off != t.got or off + n > t.total:
            self.cur = None
            self.dead = image_id
            self.error(P.E_STATE, image_id, "image %d: data at offset %d+%d, expected %d of %d"
                       % (image_id, off, n, t.got, t.total))
            return
        if t.fail is None:
            if t.fmt == P.FMT_JPEG:
                self.jpeg_w[off:off + n] = data
            elif t.fmt == P.FMT_RGB565Z:
                payloads.inflate(self, t, data)
            elif self.view is not None:
                self.view[off:off + n] = data
            elif self.gray:
                self.img[off:off + n] = list(data)
            elif off % 2 or n % 2:
                t.fail = (P.E_STATE, "RGB565 chunk splits a pixel (offset %d, %d bytes)" % (off, n))
            else:
                fill_rows(self.img, self.w, off, data)
        t.got += n
        if t.got == t.total:
            if t.z is not None and t.fail is None and not t.z.complete():
                t.fail = (P.E_INFLATE, "image %d: the deflate stream gave %d of %d bytes"
                          % (t.id, t.z.done, t.z.raw_total))
            t.z = None   # its window and source buffer are free for the KPU run
            self.finish()

    def finish(self):
        t = self.cur
        self.cur = None
        self.last_done = t.id
        self.ack()  # the next image streams in while this one runs
        if t.fail is not None:
            self.error(t.fail[0], t.id, t.fail[1])
            return
        self.ready = t

    def run_ready(self):
        """Infer the image finish() left ready. poll() calls this after the frame that
        completed it, not the frame handler: the decode's collection then runs high on the
        C stack, in frames the many frame handlers between two images have overwritten. The
        GC is conservative: a stale pointer to the last Image left deeper in the stack by
        the calls that used it would keep the image place alive and fail the decode."""
        t = self.ready
        self.ready = None
        try:
            self.infer(t)
        except MemoryError as e:
            self.error(P.E_NO_MEMORY, t.id, err_text(e))
        except Exception as e:
            self.error(P.E_INTERNAL, t.id, err_text(e))
        gc.collect()

    def infer(self, t):
        flags = 0
        t_prep = ticks()
        if t.fmt == P.FMT_JPEG:
            img = payloads.decode_jpeg(self, t)
            if img is None:
                return
            view = self.view
        else:
            img = self.img
            view = self.view
            if view is None:
                flags |= P.R_PIXELS_SLOW
            img.pix_to_ai()
        prep_ms = since(t_prep)
        ran = self.run_kpu(t, img)
        if ran is None:
            return
        outs, views, slot, kpu_ms = ran
        if views is not None:
            # the decoder reads the packed copies: the KPU's list of float objects (thousands
            # of GC blocks) is freed before it runs
            gc.collect()
        payloads.remake(self, t.fmt)
        pixel_crc, input_crc, src = image_place.kpu_crcs(self, img, view,
                                                         t.flags & P.F_INPUT_CRC)
        t_dec = ticks()
        boxes, mask, failed = self.decode(t, outs, slot)
        decode_ms = since(t_dec)
        if failed:
            flags |= P.R_DECODE_FAILED
        gc.collect()    # the decoder's objects: the RESULT's parts, kept for RESEND, go low
        shapes = [o["shape"] for o in self.cfg["outputs"]]
        parts = P.pack_result_parts(t.id, [(shapes[i], outs[i]) for i in range(len(outs))],
                                    boxes, kpu_ms, decode_ms, prep_ms, input_crc, pixel_crc,
                                    src, mem_free(), flags, views, mask)
        outs = None
        self.send(P.T_RESULT, parts)
        self.cache.append((t.id, parts, slot))
        self.images += 1
