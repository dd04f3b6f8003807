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


def test_free_commit_interface():
    parser = P.Parser(max_payload=64)
    data = P.encode(P.T_LOG, 1, b"a" * 60) * 5
    got = []
    pos = 0
    while pos < len(data):
        room = parser.free()
        n = min(len(room), len(data) - pos, 37)
        room[0:n] = data[pos:pos + n]
        parser.commit(n)
        pos += n
        while True:
            f = parser.next()
            if f is None:
                break
            got.append(bytes(f[2]))
    assert got == [b"a" * 60] * 5


# ---------------------------------------------------------------- payload codecs
def test_result_round_trip():
    outs = [((2, 1, 3), [0.5, -1.25, 3.0, 4.0, 5.5, -6.0]), ((1, 1, 1), [7.0])]
    boxes = [(0.1, 0.2, 0.3, 0.4, 0.9, 0), (0.5, 0.5, 0.75, 1.0, 0.6, 3)]
    parts = P.pack_result_parts(77, outs, boxes, kpu_ms=12.5, decode_ms=1.5, prep_ms=2.0,
                                input_crc=0xDEADBEEF, pixel_crc=5, crc_source=P.CRC_LUT,
                                mem_free=123456)
    payload = b"".join(bytes(p) for p in parts)
    r = P.unpack_result(payload)
    assert r["image_id"] == 77 and r["input_crc"] == 0xDEADBEEF and r["crc_source"] == P.CRC_LUT
    assert r["outputs"][0]["shape"] == (2, 1, 3)
    assert r["outputs"][0]["data"] == [0.5, -1.25, 3.0, 4.0, 5.5, -6.0]
    assert r["outputs"][1]["data"] == [7.0]
    assert len(r["boxes"]) == 2 and r["boxes"][1][5] == 3
    assert r["boxes"][0][4] == pytest.approx(0.9)
    assert r["kpu_ms"] == 12.5 and r["mem_free"] == 123456
    with pytest.raises(P.ProtocolError):
        P.unpack_result(payload[:-3])
    # the frame goes out in parts with the same CRC as a single buffer
    chunks = []
    P.send(chunks.append, P.T_RESULT, 4, parts)
    assert b"".join(bytes(c) for c in chunks) == P.encode(P.T_RESULT, 4, payload)


def test_small_codecs():
    assert P.unpack_ack(P.pack_ack(2 ** 32 + 5)) == 5
    e = P.unpack_error(P.pack_error(P.E_MODEL_LOAD, 3, "Failed to load model"))
    assert e == {"ref": 3, "code": P.E_MODEL_LOAD, "name": "model_load",
                 "reason": "Failed to load model"}
    b = P.pack_image_begin(9, P.FMT_JPEG, P.F_INPUT_CRC, 320, 224, 12345)
    assert P.unpack_image_begin(b) == (9, P.FMT_JPEG, P.F_INPUT_CRC, 320, 224, 12345)
    with pytest.raises(P.ProtocolError):
        P.unpack_image_begin(b[:-1])
    frames = list(P.image_frames(1, P.FMT_RGB565, 0, 4, 2, bytes(range(16)), chunk=5))
    assert [t for t, _ in frames] == [P.T_IMAGE_BEGIN] + [P.T_IMAGE_DATA] * 4
    assert P.unpack_image_data(frames[2][1]) == (1, 5, bytes(range(5, 10)))
    assert P.unpack_json(P.pack_json({"a": [1, 2]})) == {"a": [1, 2]}


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
    c = P.Credit(1000)
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
    assert P.chunk_for(P.window_for(16384)) <= P.window_for(16384) // 4


def simulate(baud, read_buf_len, latency_s, images, image_bytes, infer_s, poll_s=0.0005,
             chunk=None, dt=0.0001):
    """Time-stepped model of host -> USB-serial -> board ring buffer -> board loop.
    Bytes that arrive with the ring buffer full are dropped (as on the board).
    Returns (drops, seconds, payload bytes delivered, images done)."""
    rate = baud / 10.0
    window = P.window_for(read_buf_len)
    chunk = chunk or P.chunk_for(window)
    credit = P.Credit(window)
    tx = bytearray()
    for i in range(images):
        for t, p in P.image_frames(i, P.FMT_RGB565, 0, 1, 1, bytes(image_bytes), chunk):
            tx += P.encode(t, i & 0xFFFF, p)
    frames_left = []
    pos = 0
    parser = P.Parser(max_payload=chunk + 8)
    # split the tx stream back into frame sizes to respect credit per frame
    sizes = []
    for t, p in [(t, p) for i in range(images)
                 for t, p in P.image_frames(i, P.FMT_RGB565, 0, 1, 1, bytes(image_bytes), chunk)]:
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
    # 320x224 RGB565 images, 16 KiB receive buffer, 4 ms USB latency each way,
    # 50 ms of board work per image while the next image streams in
    size = 320 * 224 * 2
    drops, t, got, done = simulate(1500000, 16384, 0.004, images=3, image_bytes=size,
                                   infer_s=0.05, dt=0.0002)
    assert drops == 0 and done == 3
    line = 1500000 / 10.0
    util = got / (t * line)
    assert util >= 0.90, util
