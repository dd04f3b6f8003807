"""device/protocol.py: codec round trip, resync, malformed frames, flow control."""
import binascii
import os
import random
import struct
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from device import protocol as P  # noqa: E402
from device import protocol_host as PH  # noqa: E402
from host.devconfig import DEFAULT_READ_BUF_LEN  # noqa: E402

payloads = st.binary(min_size=0, max_size=600)
frames_st = st.lists(st.tuples(st.integers(0, 255), st.integers(0, 0xFFFF), payloads),
                     min_size=1, max_size=8)


def test_header_layout():
    f = P.encode(P.T_ACK, 0x1234, b"\x01\x02\x03\x04")
    assert f[:2] == b"\xa5\x5a"
    assert f[2] == P.VERSION and f[3] == P.T_ACK
    assert struct.unpack("<H", f[4:6])[0] == 0x1234
    assert struct.unpack("<I", f[6:10])[0] == 4
    assert struct.unpack("<H", f[10:12])[0] == binascii.crc32(f[:10]) & 0xFFFF
    assert struct.unpack("<I", f[-4:])[0] == binascii.crc32(f[:-4]) & 0xFFFFFFFF
    assert len(f) == P.OVERHEAD + 4


@settings(max_examples=80, deadline=None)
@given(frames_st, st.randoms(use_true_random=False))
def test_round_trip_any_split(frames, rnd):
    stream = b"".join(P.encode(t, s, p) for t, s, p in frames)
    parser = P.Parser(max_payload=1024)
    got = []
    pos = 0
    while pos < len(stream):
        n = rnd.randint(1, 97)
        got += parser.feed_all(stream[pos:pos + n])
        pos += n
    assert got == [(t, s & 0xFFFF, p) for t, s, p in frames]
    assert parser.garbage == 0 and parser.buffered() == 0


@settings(max_examples=120, deadline=None)
@given(frames_st, st.lists(st.binary(max_size=300), min_size=1, max_size=9),
       st.randoms(use_true_random=False))
def test_resync_after_random_garbage(frames, garbage, rnd):
    # garbage between frames, sprinkled with sync markers and fake headers
    noisy = []
    for g in garbage:
        g = bytearray(g)
        for _ in range(rnd.randint(0, 3)):
            k = rnd.randint(0, len(g))
            g[k:k] = P.SYNC
        if rnd.random() < 0.3:
            # a well-formed header whose length lies (bounded) and no valid frame
            g += P.header(P.T_RESULT, 7, rnd.randint(0, 1024))
            g += bytes(rnd.randint(0, 40))
        noisy.append(bytes(g))
    stream = b""
    for i, (t, s, p) in enumerate(frames):
        stream += noisy[i % len(noisy)] + P.encode(t, s, p)
    stream += noisy[-1]
    parser = P.Parser(max_payload=1024)
    got = []
    pos = 0
    while pos < len(stream):
        n = rnd.randint(1, 500)
        got += parser.feed_all(stream[pos:pos + n])
        pos += n
        assert parser.buffered() <= parser.cap
    # end of input = receive time-out: drop a head candidate that waits for ever
    while parser.rescan():
        got += parser.feed_all(b"")
    assert got == [(t, s, p) for t, s, p in frames]


def test_firmware_banner_on_the_same_line():
    banner = (b"\r\n[MAIXPY]Pll0:freq:806000000\r\n init end\r\n MicroPython v0.6.2 "
              b"\xa5 not a frame \xa5\x5a\x01 \r\n>>> ")
    f1 = P.encode(P.T_INFO, 1, b'{"proto": 1}')
    f2 = P.encode(P.T_ACK, 2, P.pack_ack(99))
    parser = P.Parser()
    got = parser.feed_all(banner + f1 + b"model input 224x320 but image..." + f2)
    assert [g[0] for g in got] == [P.T_INFO, P.T_ACK]
    assert parser.garbage > 0


def test_oversized_length_is_skipped_at_once():
    parser = P.Parser(max_payload=100)
    fake = P.header(P.T_IMAGE_DATA, 1, 5000)  # valid header check, length over bound
    real = P.encode(P.T_ACK, 2, P.pack_ack(1))
    got = parser.feed_all(fake + real)
    assert got == [(P.T_ACK, 2, P.pack_ack(1))]
    assert parser.oversize == 1


def test_corrupted_length_does_not_wedge():
    parser = P.Parser(max_payload=4096)
    f = bytearray(P.encode(P.T_LOG, 1, b"x" * 50))
    f[7] ^= 0x10  # length now 4146-ish: header check fails
    real = P.encode(P.T_LOG, 2, b"hello")
    got = parser.feed_all(bytes(f) + real)
    assert got == [(P.T_LOG, 2, b"hello")]
    assert parser.bad_header >= 1


def test_false_sync_with_valid_header_then_real_frame_inside():
    # a valid header claiming 200 bytes swallows a real frame: after the CRC
    # fails the parser rescans from the false sync + 1 and still finds it
    parser = P.Parser(max_payload=1024)
    real = P.encode(P.T_LOG, 5, b"inner")
    fake = P.header(P.T_RESULT, 1, 200)
    stream = fake + real + bytes(300)
    got = parser.feed_all(stream)
    assert got == [(P.T_LOG, 5, b"inner")]
    assert parser.bad_crc == 1


def test_bad_crc_dropped_next_frame_kept():
    parser = P.Parser()
    bad = bytearray(P.encode(P.T_LOG, 1, b"payload"))
    bad[14] ^= 0xFF
    good = P.encode(P.T_LOG, 2, b"ok")
    assert parser.feed_all(bytes(bad) + good) == [(P.T_LOG, 2, b"ok")]
    assert parser.bad_crc == 1


def test_unknown_type_and_other_version_are_passed_up():
    parser = P.Parser()
    got = parser.feed_all(P.encode(0xEE, 3, b"?"))
    assert got == [(0xEE, 3, b"?")]
    h = bytearray(P.encode(P.T_HELLO, 1, b"{}"))
    h[2] = 2  # version 2: re-seal header check and CRC
    h[10:12] = struct.pack("<H", binascii.crc32(bytes(h[:10])) & 0xFFFF)
    h[-4:] = struct.pack("<I", binascii.crc32(bytes(h[:-4])) & 0xFFFFFFFF)
    p2 = P.Parser()
    f = p2.next() if p2.feed(bytes(h)) else None
    assert f is not None and f[0] == P.T_HELLO and p2.version == 2


def test_garbage_flood_is_bounded():
    parser = P.Parser(max_payload=512)
    rnd = random.Random(1)
    for _ in range(300):
        blob = bytes(rnd.getrandbits(8) for _ in range(700))
        blob = blob.replace(b"\x00", P.SYNC)  # many false syncs
        assert parser.feed_all(blob) == []
        assert parser.buffered() <= 512 + P.OVERHEAD
    assert parser.feed_all(P.encode(P.T_BYE, 9)) == [(P.T_BYE, 9, b"")]


def _feed_through_free(parser, data, piece):
    """The board's way in: bytes written into parser.free() (at most piece() at a time) and
    committed; -> the payloads of the frames that came out."""
    got = []
    pos = 0
    while pos < len(data):
        room = parser.free()
        assert len(room), "no room: the partial frame was not moved to the front"
        n = min(len(room), len(data) - pos, piece())
        room[0:n] = data[pos:pos + n]
        parser.commit(n)
        pos += n
        while True:
            f = parser.next()
            if f is None:
                break
            got.append(bytes(f[2]))
    return got


def test_free_commit_interface():
    parser = P.Parser(max_payload=64)
    data = P.encode(P.T_LOG, 1, b"a" * 60) * 5
    assert _feed_through_free(parser, data, lambda: 37) == [b"a" * 60] * 5


def test_one_frame_buffer_moves_a_partial_frame_over_itself():
    """The buffer holds one frame of max_payload: a frame of nearly that size behind a few
    stray bytes is moved to the front over its own bytes (the gap smaller than what is
    moved), piece by piece, and comes out intact; so do the frames after it."""
    parser = P.Parser(max_payload=64)
    assert parser.cap == 64 + P.OVERHEAD
    rnd = random.Random(3)
    for stray in range(1, 9):
        payloads = [bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(56, 65)))
                    for _ in range(4)]
        data = b"\x00" * stray + b"".join(P.encode(P.T_LOG, k, p) for k, p in enumerate(payloads))
        got = _feed_through_free(parser, data, lambda: rnd.randrange(1, 30))
        assert got == payloads, stray
        assert parser.dropped() == 0


# ---------------------------------------------------------------- payload codecs
def test_result_round_trip():
    outs = [((2, 1, 3), [0.5, -1.25, 3.0, 4.0, 5.5, -6.0]), ((1, 1, 1), [7.0])]
    boxes = [(0.1, 0.2, 0.3, 0.4, 0.9, 0), (0.5, 0.5, 0.75, 1.0, 0.6, 3)]
    parts = P.pack_result_parts(77, outs, boxes, kpu_ms=12.5, decode_ms=1.5, prep_ms=2.0,
                                input_crc=0xDEADBEEF, pixel_crc=5, crc_source=P.CRC_LUT,
                                mem_free=123456)
    payload = b"".join(bytes(p) for p in parts)
    r = PH.unpack_result(payload)
    assert r["image_id"] == 77 and r["input_crc"] == 0xDEADBEEF and r["crc_source"] == P.CRC_LUT
    assert r["outputs"][0]["shape"] == (2, 1, 3)
    assert r["outputs"][0]["data"] == [0.5, -1.25, 3.0, 4.0, 5.5, -6.0]
    assert r["outputs"][1]["data"] == [7.0]
    assert len(r["boxes"]) == 2 and r["boxes"][1][5] == 3
    assert r["boxes"][0][4] == pytest.approx(0.9)
    assert r["kpu_ms"] == 12.5 and r["mem_free"] == 123456
    with pytest.raises(P.ProtocolError):
        PH.unpack_result(payload[:-3])
    # the frame goes out in parts with the same CRC as a single buffer
    chunks = []
    P.send(chunks.append, P.T_RESULT, 4, parts)
    assert b"".join(bytes(c) for c in chunks) == P.encode(P.T_RESULT, 4, payload)


def test_small_codecs():
    assert PH.unpack_ack(P.pack_ack(2 ** 32 + 5)) == 5
    e = PH.unpack_error(P.pack_error(P.E_MODEL_LOAD, 3, "Failed to load model"))
    assert e == {"ref": 3, "code": P.E_MODEL_LOAD, "name": "model_load",
                 "reason": "Failed to load model"}
    b = PH.pack_image_begin(9, P.FMT_JPEG, P.F_INPUT_CRC, 320, 224, 12345)
    assert P.unpack_image_begin(b) == (9, P.FMT_JPEG, P.F_INPUT_CRC, 320, 224, 12345)
    with pytest.raises(P.ProtocolError):
        P.unpack_image_begin(b[:-1])
    frames = list(PH.image_frames(1, P.FMT_RGB565, 0, 4, 2, bytes(range(16)), chunk=5))
    assert [t for t, _ in frames] == [P.T_IMAGE_BEGIN] + [P.T_IMAGE_DATA] * 4
    assert P.unpack_image_data(frames[2][1]) == (1, 5, bytes(range(5, 10)))
    assert PH.unpack_json(P.pack_json({"a": [1, 2]})) == {"a": [1, 2]}


def test_planar_crc_matches_numpy_expansion():
    rng = np.random.RandomState(3)
    w, h = 7, 5
    rgb565 = rng.randint(0, 256, size=w * h * 2).astype(np.uint8).tobytes()
    px = np.frombuffer(rgb565, dtype=">u2").astype(np.int64)
    r5, g6, b5 = px >> 11, (px >> 5) & 63, px & 31
    r = np.round(r5 * 255 / 31).astype(np.uint8)
    g = np.round(g6 * 255 / 63).astype(np.uint8)
    b = np.round(b5 * 255 / 31).astype(np.uint8)
    planar = r.tobytes() + g.tobytes() + b.tobytes()
    assert P.planar_crc(rgb565, w, h) == binascii.crc32(planar) & 0xFFFFFFFF
    rb, g6t = P.expansion_tables()
    assert list(rb[:4]) == [0, 8, 16, 25] and rb[31] == 255 and g6t[63] == 255


# ---------------------------------------------------------------- flow control
def test_credit_window_logic():
    c = PH.Credit(1000)
    assert c.can_send(1000) and not c.can_send(1001)
    c.on_send(600)
    assert not c.can_send(401) and c.can_send(400)
    with pytest.raises(P.ProtocolError):
        c.on_send(500)
    assert c.on_ack(100) == 500          # 500 in flight
    assert c.on_ack(50) == 500           # stale ACK ignored
    assert c.on_ack(600) == 1000
    # wrap-around of the 32-bit counter
    c.sent = c.acked = 2 ** 32 - 10
    c.on_send(30)
    assert c.on_ack((2 ** 32 + 5) & 0xFFFFFFFF) == 1000 - 15
    for rbl in (16384, DEFAULT_READ_BUF_LEN):
        assert P.chunk_for(P.window_for(rbl)) <= P.window_for(rbl) // 4


def simulate(baud, read_buf_len, latency_s, images, image_bytes, infer_s, poll_s=0.0005,
             chunk=None, dt=0.0001):
    """Time-stepped model of host -> USB-serial -> board ring buffer -> board loop.
    Bytes that arrive with the ring buffer full are dropped (as on the board).
    Returns (drops, seconds, payload bytes delivered, images done)."""
    rate = baud / 10.0
    window = P.window_for(read_buf_len)
    chunk = chunk or P.chunk_for(window)
    credit = PH.Credit(window)
    tx = bytearray()
    for i in range(images):
        for t, p in PH.image_frames(i, P.FMT_RGB565, 0, 1, 1, bytes(image_bytes), chunk):
            tx += P.encode(t, i & 0xFFFF, p)
    frames_left = []
    pos = 0
    parser = P.Parser(max_payload=chunk + 8)
    # split the tx stream back into frame sizes to respect credit per frame
    sizes = []
    for t, p in [(t, p) for i in range(images)
                 for t, p in PH.image_frames(i, P.FMT_RGB565, 0, 1, 1, bytes(image_bytes), chunk)]:
        sizes.append(len(p) + P.OVERHEAD)
    frames_left = sizes
    wire = []       # (arrival_time, bytes) in flight host -> board
    acks = []       # (arrival_time, value) in flight board -> host
    ring = bytearray()
    consumed = 0
    last_ack = 0
    drops = 0
    t = 0.0
    busy_until = 0.0
    next_poll = 0.0
    sending = 0     # bytes of the current frame still to put on the wire
    fi = 0
    got_bytes = 0
    done = 0
    expect = {}
    budget = 0.0
    while done < images and t < 60:
        t += dt
        # host: ACKs arriving
        while acks and acks[0][0] <= t:
            credit.on_ack(acks.pop(0)[1])
        # host: start frames when credit allows
        if sending == 0 and fi < len(frames_left) and credit.can_send(frames_left[fi]):
            credit.on_send(frames_left[fi])
            sending = frames_left[fi]
            fi += 1
        budget += rate * dt
        if sending:
            n = int(min(budget, sending))
            budget -= n
            if n:
                wire.append((t + latency_s, bytes(tx[pos:pos + n])))
                pos += n
                sending -= n
        else:
            budget = 0.0
        # board UART: bytes arriving
        while wire and wire[0][0] <= t:
            data = wire.pop(0)[1]
            room = read_buf_len - 1 - len(ring)
            if len(data) > room:
                drops += len(data) - room
                data = data[:room]
            ring += data
        # board loop
        if t >= busy_until and t >= next_poll:
            next_poll = t + poll_s
            while ring:
                k = parser.feed(ring)
                del ring[:k]
                consumed += k
                while True:
                    f = parser.next()
                    if f is None:
                        break
                    if f[0] == P.T_IMAGE_BEGIN:
                        img_id, _, _, _, _, total = P.unpack_image_begin(f[2])
                        expect[img_id] = total
                    elif f[0] == P.T_IMAGE_DATA:
                        img_id, off, data = P.unpack_image_data(f[2])
                        got_bytes += len(data)
                        expect[img_id] -= len(data)
                        if expect[img_id] == 0:
                            done += 1
                            busy_until = t + infer_s   # pix_to_ai + KPU + RESULT
                if k == 0:
                    break
            if consumed != last_ack:
                last_ack = consumed
                acks.append((t + latency_s + 20.0 / rate, consumed & 0xFFFFFFFF))
    return drops, t, got_bytes, done


@pytest.mark.parametrize("baud", [115200, 1500000, 4500000])
def test_no_byte_lost_at_any_baud(baud):
    drops, t, got, done = simulate(baud, 4096, 0.004, images=2, image_bytes=20000,
                                   infer_s=0.05)
    assert drops == 0 and done == 2 and got == 40000


def test_utilisation_at_1500000():
    # 320x224 RGB565 images, the default receive buffer (32 KiB), 4 ms USB latency each
    # way, 50 ms of board work per image while the next image streams in
    size = 320 * 224 * 2
    drops, t, got, done = simulate(1500000, DEFAULT_READ_BUF_LEN, 0.004, images=3, image_bytes=size,
                                   infer_s=0.05, dt=0.0002)
    assert drops == 0 and done == 3
    line = 1500000 / 10.0
    util = got / (t * line)
    assert util >= 0.90, util


# ---------------------------------------------------------------- the board end (server.Server)
class FakeUart:
    """REPL UART seen from the board: a bounded receive ring that drops overflow."""

    def __init__(self, read_buf_len):
        self.cap = read_buf_len - 1
        self.rx = bytearray()
        self.tx = bytearray()
        self.dropped = 0

    def host_write(self, data):
        room = self.cap - len(self.rx)
        self.dropped += max(0, len(data) - room)
        self.rx += data[:room]

    def any(self):
        return len(self.rx)

    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        buf[0:n] = self.rx[:n]
        del self.rx[:n]
        return n

    def write(self, data):
        self.tx += bytes(data)
        return len(data)


class FakeImage:
    def __init__(self, data=None, size=None, from_bytes=False):
        if from_bytes:
            from PIL import Image as PILImage
            import io as _io
            pil = PILImage.open(_io.BytesIO(data)).convert("RGB")
            a = np.asarray(pil).astype(np.int64)
            self.w, self.h = pil.size
            self.px = list(((a[..., 0] >> 3) << 11 | (a[..., 1] >> 2) << 5 | (a[..., 2] >> 3))
                           .ravel())
        else:
            self.w, self.h = size
            self.px = [0] * (self.w * self.h)
        self.ai = False

    def width(self):
        return self.w

    def height(self):
        return self.h

    def __setitem__(self, sl, values):
        # firmware rule: RGB888 tuple -> RGB565 through the 8->5/6 tables
        self.px[sl] = [((r * 31 + 127) // 255) << 11 | ((g * 63 + 127) // 255) << 5 |
                       ((b * 31 + 127) // 255) for r, g, b in values]

    def __bytes__(self):
        return b"".join(struct.pack(">H", p) for p in self.px)

    def pix_to_ai(self):
        self.ai = True


class FakeModel:
    api = "fake"

    def __init__(self, error=None):
        self.error = error
        self.runs = 0

    def loaded(self):
        return self.error is None

    def run(self, img):
        assert img.ai, "pix_to_ai() must come before run()"
        self.runs += 1
        # grid output (5, 1, 2): a confident box in cell 1, score from pixel 0
        s = 3.0 if img.px[0] else -3.0
        return [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -5.0, s]]

    def close(self):
        pass


def serve_cfg(w=2, h=2, rbl=2048):
    return {"mode": "serve", "baud": 1500000, "read_buf_len": rbl, "input_crc": "auto",
            "firmware": "canmv-v5", "input": {"width": w, "height": h, "channels": 3},
            "model": {"source": "flash", "address": 0x300000, "size": 100, "sha256": "00",
                      "version": 5},
            "outputs": [{"node": "out", "shape": [5, 1, 2]}],
            "decoder": {"type": "grid", "anchors": [], "classes": 1, "labels": ["x"],
                        "threshold": 0.5, "nms": 0.3}}


class Host:
    """Host end driving a server.Server through FakeUart with the credit window."""

    def __init__(self, server, uart):
        self.server, self.uart = server, uart
        self.parser = P.Parser()
        self.seq = 0
        self.credit = None
        self.got = []
        self.acks = []

    def pump(self, rounds=1):
        for _ in range(rounds):
            self.server.poll()
            for f in self.parser.feed_all(bytes(self.uart.tx)):
                if f[0] == P.T_ACK:
                    self.acks.append(PH.unpack_ack(f[2]))
                    if self.credit:
                        self.credit.on_ack(self.acks[-1])
                else:
                    self.got.append(f)
            self.uart.tx.clear()

    def send(self, ftype, payload):
        frame = P.encode(ftype, self.seq, payload)
        self.seq += 1
        if self.credit:
            spins = 0
            while not self.credit.can_send(len(frame)):
                self.pump()
                spins += 1
                assert spins < 1000, "credit never came back"
            self.credit.on_send(len(frame))
        self.uart.host_write(frame)

    def hello(self):
        self.send(P.T_HELLO, P.pack_json({"proto": 1}))
        self.pump(3)
        t, _, p = self.got.pop(0)
        assert t == P.T_INFO
        info = PH.unpack_json(p)
        self.credit = PH.Credit(info["window"])
        return info

    def image(self, image_id, w, h, data, fmt=P.FMT_RGB565, flags=P.F_INPUT_CRC, chunk=None):
        for t, p in PH.image_frames(image_id, fmt, flags, w, h, data, chunk or 64):
            self.send(t, p)
            self.pump()


@pytest.fixture
def board(monkeypatch):
    return board_factory(monkeypatch)


def board_factory(monkeypatch):
    """make(cfg=None, model=None) -> (Host, the device/server.py Server, its FakeUart)."""
    import types
    from device import clock, server
    fake_image = types.ModuleType("image")
    fake_image.Image = FakeImage
    monkeypatch.setitem(sys.modules, "image", fake_image)
    import time as _t
    utime = types.SimpleNamespace(ticks_ms=lambda: int(_t.monotonic() * 1000),
                                  ticks_diff=lambda a, b: a - b, sleep_ms=lambda ms: None)
    monkeypatch.setattr(server, "time", utime)
    monkeypatch.setattr(clock, "time", utime)

    def make(cfg=None, model=None):
        cfg = cfg or serve_cfg()
        uart = FakeUart(cfg["read_buf_len"])
        board_server = server.Server(cfg, uart, model or FakeModel())
        return Host(board_server, uart), board_server, uart
    return make


def test_serve_hello_image_result(board):
    host, server, uart = board()
    info = host.hello()
    assert info["proto"] == P.VERSION and info["input"] == [2, 2]
    assert info["window"] == 2048 - P.WINDOW_MARGIN and info["model_loaded"]
    rgb565 = bytes([0xF8, 0x00, 0x07, 0xE0, 0x00, 0x1F, 0x84, 0x10])  # red green blue grey
    host.image(7, 2, 2, rgb565)
    host.pump(3)
    (t, _, p), = host.got
    assert t == P.T_RESULT
    r = PH.unpack_result(p)
    assert r["image_id"] == 7 and r["outputs"][0]["shape"] == (5, 1, 2)
    assert len(r["boxes"]) == 1 and r["boxes"][0][5] == 0
    # the board rebuilt the pixels exactly and the CRC is the planar expansion's
    assert bytes(server.img) == rgb565
    assert r["crc_source"] == P.CRC_LUT
    assert r["input_crc"] == P.planar_crc(rgb565, 2, 2)
    assert r["flags"] & P.R_PIXELS_SLOW
    assert uart.dropped == 0
    assert host.acks[-1] == host.credit.sent  # every byte after HELLO acknowledged


def test_serve_pipelined_images_no_drop(board):
    cfg = serve_cfg(w=16, h=8, rbl=1024)
    host, server, uart = board(cfg)
    host.hello()
    imgs = [bytes(np.random.RandomState(i).randint(0, 256, 256).astype(np.uint8))
            for i in range(3)]
    for i, data in enumerate(imgs):
        for t, p in PH.image_frames(i, P.FMT_RGB565, 0, 16, 8, data, 96):
            host.send(t, p)   # no pump between frames: only the credit window throttles
    host.pump(20)
    assert [PH.unpack_result(p)["image_id"] for t, _, p in host.got] == [0, 1, 2]
    assert uart.dropped == 0 and server.model.runs == 3


def test_serve_wrong_size_one_error_after_data(board):
    host, server, uart = board()
    host.hello()
    host.image(3, 4, 2, bytes(16))
    host.pump(3)
    assert len(host.got) == 1
    e = PH.unpack_error(host.got[0][2])
    assert e["code"] == P.E_SIZE and e["ref"] == 3 and "model input is 2x2" in e["reason"]
    assert server.model.runs == 0


def test_serve_model_load_error_reported_per_image(board):
    host, server, uart = board(model=FakeModel(error="model load failed (canmv-new, flash "
                                                     "0x300000 size 100): OSError: Failed to "
                                                     "load model"))
    info = host.hello()
    assert info["model_loaded"] is False and "Failed to load model" in info["load_error"]
    host.image(1, 2, 2, bytes(8))
    host.pump(2)
    e = PH.unpack_error(host.got[-1][2])
    assert e["code"] == P.E_MODEL_LOAD and "Failed to load model" in e["reason"]


def test_serve_protocol_errors(board):
    host, server, uart = board()
    host.hello()
    host.send(0x7E, b"??")
    host.send(P.T_IMAGE_DATA, PH.pack_image_data_prefix(9, 0) + b"abcd")
    host.send(P.T_IMAGE_DATA, PH.pack_image_data_prefix(9, 4) + b"abcd")  # same id: no 2nd error
    host.send(P.T_IMAGE_BEGIN, b"short")
    host.pump(3)
    codes = [PH.unpack_error(p)["code"] for t, _, p in host.got]
    assert codes == [P.E_UNKNOWN_TYPE, P.E_STATE, P.E_BAD_PAYLOAD]
    # out-of-order chunk: image dropped with one error, the next image still works
    host.got.clear()
    host.send(P.T_IMAGE_BEGIN, PH.pack_image_begin(4, P.FMT_RGB565, 0, 2, 2, 8))
    host.send(P.T_IMAGE_DATA, PH.pack_image_data_prefix(4, 4) + b"abcd")
    host.image(5, 2, 2, bytes(8))
    host.pump(3)
    assert PH.unpack_error(host.got[0][2])["code"] == P.E_STATE
    assert PH.unpack_result(host.got[1][2])["image_id"] == 5


def test_serve_jpeg_and_exit(board):
    from PIL import Image as PILImage
    import io as _io
    host, server, uart = board()
    host.hello()
    buf = _io.BytesIO()
    PILImage.new("RGB", (2, 2), (255, 255, 255)).save(buf, "JPEG", quality=95)
    host.image(11, 2, 2, buf.getvalue(), fmt=P.FMT_JPEG)
    host.pump(3)
    r = PH.unpack_result(host.got[-1][2])
    assert r["image_id"] == 11 and len(r["boxes"]) == 1
    host.send(P.T_EXIT, b"")
    host.pump(2)
    assert host.got[-1][0] == P.T_BYE and not server.running


def test_serve_frame_with_other_version_gets_error(board):
    host, server, uart = board()
    h = bytearray(P.encode(P.T_HELLO, 1, b"{}"))
    h[2] = 9
    h[10:12] = struct.pack("<H", binascii.crc32(bytes(h[:10])) & 0xFFFF)
    h[-4:] = struct.pack("<I", binascii.crc32(bytes(h[:-4])) & 0xFFFFFFFF)
    uart.host_write(bytes(h))
    host.pump(2)
    e = PH.unpack_error(host.got[0][2])
    assert e["code"] == P.E_VERSION and "protocol 1" in e["reason"]


# ---------------------------------------------------------------- recovery (board side)
def _replies(host):
    out = []
    for t, _, p in host.got:
        if t == P.T_RESULT:
            out.append(("RESULT", PH.unpack_result(p)["image_id"]))
        elif t == P.T_ERROR:
            e = PH.unpack_error(p)
            out.append((e["name"], e["ref"]))
        else:
            out.append((P.TYPE_NAMES.get(t, t), None))
    host.got.clear()
    return out


def test_ack_names_the_last_intact_host_frame(board):
    host, server, uart = board()
    info = host.hello()
    assert "seq_ack" in info["features"] and info["result_cache"] >= 1
    host.image(4, 2, 2, bytes(8))
    host.pump(3)
    raw = [p for t, _, p in host.parser.feed_all(b"")]  # nothing pending
    assert raw == []
    assert server.last_seq == host.seq - 1
    # the ACK codec carries it: 6 bytes, and old 4-byte ACKs still parse
    assert PH.unpack_ack_seq(P.pack_ack(10, 7)) == (10, 7)
    assert PH.unpack_ack_seq(P.pack_ack(10)) == (10, None)
    with pytest.raises(P.ProtocolError):
        PH.unpack_ack_seq(b"12345")


def test_corrupted_frames_get_a_nack_naming_the_image_and_the_board_keeps_serving(board):
    host, server, uart = board()
    host.hello()
    frames = [P.encode(t, 100 + k, p) for k, (t, p) in
              enumerate(PH.image_frames(5, P.FMT_RGB565, 0, 2, 2, bytes(8), 4))]
    bad = bytearray(frames[1])
    bad[-6] ^= 0x01                        # payload bit flip: CRC fails
    for f in [frames[0], bytes(bad), frames[2]]:
        uart.host_write(f)
        host.pump()
    host.pump(2)
    got = _replies(host)
    assert ("crc", 5) in got, got          # NACK naming the image being received
    assert ("state", 5) in got             # and the gap it left
    assert server.running and not [g for g in got if g[0] == "RESULT"]
    host.image(6, 2, 2, bytes(8))
    host.pump(3)
    assert _replies(host) == [("RESULT", 6)]


def test_duplicated_frames_are_harmless(board):
    host, server, uart = board()
    host.hello()
    frames = [P.encode(t, 200 + k, p) for k, (t, p) in
              enumerate(PH.image_frames(8, P.FMT_RGB565, 0, 2, 2, bytes(range(8)), 4))]
    for f in [frames[0], frames[0], frames[1], frames[1], frames[2], frames[2], frames[0]]:
        uart.host_write(f)
        host.pump()
    host.pump(3)
    assert _replies(host) == [("RESULT", 8)]
    assert server.model.runs == 1


def test_resend_returns_the_cached_result_or_says_there_is_none(board):
    host, server, uart = board()
    host.hello()
    for i in (1, 2, 3):
        host.image(i, 2, 2, bytes([i]) * 8)
    host.pump(3)
    first = {PH.unpack_result(p)["image_id"]: p for t, _, p in host.got if t == P.T_RESULT}
    host.got.clear()
    host.send(P.T_RESEND, PH.pack_resend(3))
    host.send(P.T_RESEND, PH.pack_resend(1))          # beyond the cache (2 results)
    host.send(P.T_IMAGE_BEGIN, PH.pack_image_begin(4, P.FMT_RGB565, 0, 2, 2, 8))
    host.send(P.T_RESEND, PH.pack_resend(4))          # incomplete
    host.pump(3)
    (t, _, p), e1, e2 = host.got
    assert t == P.T_RESULT and p == first[3], "byte-identical to the first RESULT"
    e1, e2 = PH.unpack_error(e1[2]), PH.unpack_error(e2[2])
    assert (e1["name"], e1["ref"]) == ("no_result", 1)
    assert (e2["name"], e2["ref"]) == ("no_result", 4) and "incomplete" in e2["reason"]
    # a new session (HELLO) forgets the cache: ids may start again, results never mix
    host.got.clear()
    host.send(P.T_HELLO, b"{}")
    host.pump(2)
    host.got.clear()
    host.credit = PH.Credit(server.window)
    host.send(P.T_RESEND, PH.pack_resend(3))
    host.pump(2)
    assert _replies(host) == [("no_result", 3)]


def test_truncated_frame_is_dropped_once_stale(board, monkeypatch):
    from device import server as board_server
    clock = [0]
    monkeypatch.setattr(board_server, "ticks", lambda: clock[0])
    monkeypatch.setattr(board_server, "since", lambda t0: clock[0] - t0)
    host, server, uart = board()
    host.hello()
    frames = [P.encode(t, 300 + k, p) for k, (t, p) in
              enumerate(PH.image_frames(9, P.FMT_RGB565, 0, 2, 2, bytes(8), 8))]
    uart.host_write(frames[0] + frames[1][:10])       # the last frame is cut short
    host.pump(3)
    assert server.parser.want and not [g for g in _replies(host) if g[0] != "ACK"]
    clock[0] += P.STALE_MS + 50
    host.pump(2)
    got = [g for g in _replies(host) if g[0] != "ACK"]
    assert got == [("crc", 9)], got                   # dropped, and said so
    assert not server.parser.want
    # the image is incomplete: a RESEND says so; the same id sent again completes
    host.send(P.T_RESEND, PH.pack_resend(9))
    host.pump(2)
    assert [g for g in _replies(host) if g[0] != "ACK"] == [("no_result", 9)]


def test_malformed_frames_never_crash_the_board_or_grow_its_memory(board):
    """Random garbage, false syncs, oversize lengths, bad CRCs, unknown types, short and
    absurd payloads: the board answers ERROR frames, keeps serving, and the memory it holds
    does not grow with the number of bad frames."""
    import tracemalloc
    host, server, uart = board(serve_cfg(rbl=4096))
    host.hello()
    rnd = random.Random(7)

    def bad_frames(n):
        for _ in range(n):
            kind = rnd.randrange(7)
            if kind == 0:
                blob = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))
                yield blob.replace(b"\x00", P.SYNC)
            elif kind == 1:
                yield P.header(P.T_IMAGE_DATA, rnd.getrandbits(16), 1 << 30)   # over the bound
            elif kind == 2:
                f = bytearray(P.encode(P.T_IMAGE_DATA, 1, bytes(rnd.randint(8, 200))))
                f[rnd.randrange(12, len(f))] ^= 1 << rnd.randrange(8)           # bad CRC
                yield bytes(f)
            elif kind == 3:
                yield P.encode(rnd.choice([0x00, 0x7F, 0xEE, P.T_INFO, P.T_RESULT]), 1,
                               bytes(rnd.randint(0, 50)))                       # wrong type
            elif kind == 4:
                t = rnd.choice([P.T_IMAGE_BEGIN, P.T_IMAGE_DATA, P.T_RESEND, P.T_HELLO])
                yield P.encode(t, 1, bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 20))))
            elif kind == 5:
                yield P.encode(P.T_IMAGE_BEGIN, 1, PH.pack_image_begin(
                    rnd.getrandbits(32), rnd.randrange(4), rnd.getrandbits(8),
                    rnd.randrange(65536), rnd.randrange(65536), rnd.getrandbits(32)))
            else:
                yield P.encode(P.T_IMAGE_DATA, 1, PH.pack_image_data_prefix(
                    rnd.getrandbits(32), rnd.getrandbits(32)) + bytes(rnd.randint(0, 64)))

    ids = iter(range(1000, 2000))

    def blast(n):
        errors = 0
        for f in bad_frames(n):
            uart.host_write(f)
            host.pump()
            errors += sum(1 for t, _, _ in host.got if t == P.T_ERROR)
            host.got.clear()
        # a stale candidate left at the end is dropped, and the board still serves
        while server.parser.want:
            server.parser.rescan()
            host.pump()
        host.got.clear()
        host.send(P.T_HELLO, b"{}")
        host.pump(3)
        assert any(t == P.T_INFO for t, _, _ in host.got)
        host.got.clear()
        host.credit = PH.Credit(server.window)
        image_id = next(ids)
        host.image(image_id, 2, 2, bytes(8))
        host.pump(3)
        assert _replies(host) == [("RESULT", image_id)]
        return errors

    assert blast(300) > 50 and server.running
    tracemalloc.start()
    blast(300)
    import gc as _gc
    _gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    blast(1500)
    _gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert server.running
    assert grown < 16 * 1024, "the board holds %d more bytes after 5x more bad frames" % grown
    assert len(server.cache) <= 2 and server.parser.buffered() <= server.parser.cap


def _send_rgb565z(host, image_id, w, h, raw, chunk, flags=0):
    from host import rgb565z
    for t, p in rgb565z.image_frames(image_id, flags, w, h, rgb565z.segments(raw, chunk)):
        host.send(t, p)
        host.pump()


def test_rgb565z_without_uctypes_goes_through_the_slice_path(board, monkeypatch):
    """No uctypes view of the Image: each segment is inflated into a bytearray and stored
    through the slice path, pixel for pixel; the board's uzlib is the vboard's shim."""
    from device import zinflate
    from host.vboard.shims import uzlib
    monkeypatch.setattr(zinflate, "uzlib", uzlib.build(None))
    host, server, uart = board(serve_cfg(w=16, h=8, rbl=1024))
    info = host.hello()
    assert "rgb565z" in info["formats"]
    raw = bytes(np.random.RandomState(3).randint(0, 4, 256).astype(np.uint8))
    _send_rgb565z(host, 4, 16, 8, raw, info["chunk"])
    host.pump(5)
    results = [PH.unpack_result(p) for t, _, p in host.got if t == P.T_RESULT]
    assert _replies(host) == [("RESULT", 4)]
    r = results[0]
    assert bytes(server.img) == raw and r["flags"] & P.R_PIXELS_SLOW
    assert info["chunk"] < len(raw)     # more than one segment


def test_rgb565z_refused_by_a_board_without_uzlib(board, monkeypatch):
    from device import zinflate
    monkeypatch.setattr(zinflate, "uzlib", None)
    host, server, uart = board(serve_cfg(w=16, h=8, rbl=1024))
    info = host.hello()
    assert info["formats"] == ["rgb565", "jpeg"]
    _send_rgb565z(host, 5, 16, 8, bytes(256), info["chunk"])
    host.pump(5)
    assert _replies(host) == [("format", 5)]
    assert server.model.runs == 0
