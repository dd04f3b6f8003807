"""device/protocol.py on the board's interpreter (MicroPython 1.11, float32) against the host's
CPython import: frames and payloads encoded on each side byte for byte, out-of-range fields
refused by both (the board's ustruct would truncate them silently), payload decoders on
truncated and corrupted input, and the board's incremental parser path (free()/commit(),
stalls) on streams with a bit flipped at every position, cut at every length, garbage and
false syncs. The one driver, tests/mpy/protocol_cases.py, runs on both interpreters."""
import os
import random
import struct
import sys

import mpy_harness as H

sys.path.insert(0, H.MPY_DIR)
import protocol_cases  # noqa: E402  (the same driver the interpreter runs)
from device import protocol as P  # noqa: E402
from device import protocol_host as PH  # noqa: E402

def f32(v):
    return {"f32": struct.pack("<f", v).hex()}


def f32s(vals):
    return {"f32s": struct.pack("<%df" % len(vals), *vals).hex()}


def frame(ftype, seq, payload):
    return P.encode(ftype, seq, payload)


def encode_cases(rng):
    cases = []
    for k in range(30):
        n = [0, 1, 7, 100, 600][k % 5]
        cases.append({"op": "encode", "type": rng.randrange(256), "seq": rng.randrange(1 << 20),
                      "payload": os.urandom(n).hex()})
    cases += [{"op": "encode", "type": t, "seq": 1, "payload": ""} for t in (256, -1, 1000)]
    return cases


def pack_cases(rng):
    c = []

    def add(fn, *args):
        c.append({"op": "call", "fn": fn, "args": list(args)})

    for v in (0, 1, 0xFFFFFFFF, 1 << 32, (1 << 40) + 5, -1):
        add("pack_ack", v)
        add("pack_ack", v, rng.randrange(1 << 17))
        add("pack_resend", v)
    for code in (0, 15, 0xFFFF, 0x10000, 70000, -1):
        add("pack_error", code, rng.randrange(1 << 33), "reason %d" % code)
    add("pack_error", 3, 7, "\u00e9\u4e2d" * 300)               # cut at 512 bytes
    good = [5, 0, 1, 320, 224, 143360]
    limits = [None, 0xFF, 0xFF, 0xFFFF, 0xFFFF, 0xFFFFFFFF]
    add("pack_image_begin", *good)
    for i in range(1, 6):
        for bad in (limits[i], limits[i] + 1, -1):
            args = list(good)
            args[i] = bad
            add("pack_image_begin", *args)
    for off in (0, 4096, 0xFFFFFFFF, 1 << 32, -1):
        add("pack_image_data_prefix", rng.randrange(1 << 34), off)
    for k in range(12):
        shape = [rng.randrange(1, 6), rng.randrange(1, 4), rng.randrange(1, 4)]
        n = shape[0] * shape[1] * shape[2]
        vals = [rng.gauss(0, 50) for _ in range(n)]
        if k % 3 == 1:
            vals[0], vals[-1] = float("inf"), float("-inf")
        boxes = [[f32(rng.random()) for _ in range(5)] + [rng.randrange(4)]
                 for _ in range(k % 4)]
        if k == 10:
            boxes.append([f32(0.5)] * 5 + [70000])           # class id beyond uint16
        flags = 300 if k == 11 else k % 4
        add("pack_result_parts", rng.randrange(1 << 32), [[shape, f32s(vals)]], boxes,
            f32(rng.random() * 100), f32(1.5), f32(0.25), rng.randrange(1 << 32),
            rng.randrange(1 << 33), k % 3, rng.randrange(1 << 33), flags)
    for n in (0, 1, 5, 40):
        add("pack_floats", f32s([rng.gauss(0, 1e3) for _ in range(n)]))
    add("chunk_for", 32704)
    add("chunk_for", 100)
    add("window_for", 32768)
    add("crc32", {"hex": os.urandom(300).hex()}, 12345)
    add("planar_crc", {"hex": os.urandom(2 * 8 * 3).hex()}, 8, 3)
    return c


def unpack_cases(rng):
    c = []

    def add(fn, payload):
        c.append({"op": "call", "fn": fn, "args": [{"hex": bytes(payload).hex()}]})

    result = b"".join(bytes(x) for x in P.pack_result_parts(
        7, [((2, 2, 3), [rng.gauss(0, 9) for _ in range(12)]), ((1, 1, 2), [0.5, -0.0])],
        [(0.1, 0.2, 0.3, 0.4, 0.9, 1), (0.0, 0.0, 1.0, 1.0, 0.6, 0)], 12.5, 1.0, 2.0,
        1, 2, P.CRC_LUT, 3, 99))
    for k in range(len(result) + 2):                   # every truncation, then trailing bytes
        add("unpack_result", (result + b"\x00\x01")[:k])
    for k in range(0, len(result), 3):                 # a byte changed in every field
        bad = bytearray(result)
        bad[k] ^= 0xFF
        add("unpack_result", bad)
    err = P.pack_error(12, 77, "decoder failed \u00e9")
    for k in range(len(err) + 1):
        add("unpack_error", err[:k])
    add("unpack_error", err[:6] + b"\xff\xfe bad utf-8")
    for k in range(30):                                # reasons that are not always UTF-8
        add("unpack_error", err[:6] + os.urandom(rng.randrange(1, 12)))
        add("unpack_error", err[:6] + "\u00e9\u4e2d\U0001f600".encode()[:rng.randrange(1, 10)])
    begin = PH.pack_image_begin(9, 1, 3, 320, 224, 1000)
    for k in range(len(begin) + 2):
        add("unpack_image_begin", (begin + b"\x00\x00")[:k])
    data = PH.pack_image_data_prefix(9, 4096) + b"pixels"
    for k in range(len(data) + 1):
        add("unpack_image_data", data[:k])
    for payload in (b"", b"\x01\x02\x03\x04", b"\x01\x02\x03\x04\x05", b"\x01\x02\x03\x04\x05\x06",
                    b"\x01" * 7):
        add("unpack_ack_seq", payload)
        add("unpack_resend", payload)
    for n in range(0, 14):
        add("unpack_floats", os.urandom(n))
    add("unpack_json", b'{"proto": 1, "features": ["resend", "nack"], "n": [1, 2, 3]}')
    return c


def _stream(rng, n_frames, sizes=(0, 3, 17, 40)):
    return b"".join(frame(rng.randrange(1, 0x21), rng.randrange(1 << 16),
                          os.urandom(rng.choice(sizes))) for _ in range(n_frames))


def _chunks(rng, n):
    out = []
    while sum(out) < n:
        out.append(rng.choice([0, 1, 2, 5, 11, 64, 300]))
    return out


def parse_cases(rng):
    c = []

    def add(stream, chunks=None, max_payload=P.DEVICE_MAX_PAYLOAD, path=None):
        c.append({"op": "parse", "stream": bytes(stream).hex(), "max_payload": max_payload,
                  "chunks": _chunks(rng, len(stream)) if chunks is None else chunks,
                  "path": path or rng.choice(["commit", "feed"])})

    two = frame(0x11, 5, os.urandom(20)) + frame(0x10, 6, os.urandom(14))
    tail = frame(0x12, 7, b"after")
    for bit in range(len(two) * 8):                       # a bit flipped at every position
        bad = bytearray(two)
        bad[bit // 8] ^= 1 << (bit % 8)
        add(bytes(bad) + tail)
    first = frame(0x01, 1, os.urandom(25))
    for k in range(len(first) + 1):                       # cut at every length
        add(first[:k] + tail)
        add(first[:k] + tail, chunks=[k, 0], path="commit")
    for k in range(40):                                   # garbage around frames
        parts = [os.urandom(rng.randrange(0, 60)), _stream(rng, rng.randrange(1, 4)),
                 os.urandom(rng.randrange(0, 60)), b"\xa5" * rng.randrange(3),
                 _stream(rng, 1)]
        add(b"".join(parts))
    for k in range(25):                                   # false syncs with valid headers
        n = rng.choice([5, 30, 200, 5000, 9000, 1 << 21])
        hdr = P.header(rng.randrange(1, 0x21), rng.randrange(1 << 16), n)
        add(hdr + _stream(rng, 2) + os.urandom(rng.randrange(10)),
            max_payload=rng.choice([P.DEVICE_MAX_PAYLOAD, 64]))
    for k in range(20):               # near-full frames behind stray bytes: the one-frame buffer
        frames = b"".join(frame(0x11, j, os.urandom(rng.randrange(48, 65))) for j in range(3))
        add(os.urandom(rng.randrange(1, 9)) + frames, max_payload=64)   # moves them over itself
    for k in range(10):                                   # version 0 and other versions
        f = bytearray(frame(0x02, k, b"v"))
        f[2] = k % 3
        f[10:12] = struct.pack("<H", P.crc32(bytes(f[0:10])) & 0xFFFF)
        f[-4:] = struct.pack("<I", P.crc32(bytes(f[:-4])))
        add(bytes(f) + tail)
    return c


def all_cases():
    rng = random.Random(11)
    state = random.getstate()
    random.seed(11)
    os_urandom = os.urandom
    try:
        os.urandom = lambda n: bytes(rng.randrange(256) for _ in range(n))   # reproducible
        return encode_cases(rng) + pack_cases(rng) + unpack_cases(rng) + parse_cases(rng)
    finally:
        os.urandom = os_urandom
        random.setstate(state)


@H.needs_micropython
def test_board_and_host_codecs_agree():
    cases = all_cases()
    board = H.run("protocol_cases.py", cases)
    host = [protocol_cases.one(c) for c in cases]
    diffs = [(i, c.get("fn", c["op"]), b, h) for i, (c, b, h) in
             enumerate(zip(cases, board, host)) if b != h]
    frames = sum(len(r.get("frames", [])) for r in host)
    refused = sum(1 for r in host if r.get("error") == "ValueError")
    print("protocol: %d cases, %d frames parsed, %d out-of-range refusals, %d differences"
          % (len(cases), frames, refused, len(diffs)))
    assert len(cases) >= 600
    assert not diffs, diffs[:3]


def test_out_of_range_fields_are_refused_not_truncated():
    """What the board's ustruct would have done silently is a ValueError on both sides."""
    results = {}
    for c in pack_cases(random.Random(1)):
        results.setdefault(c["fn"], []).append(protocol_cases.one(c))
    for fn in ("pack_error", "pack_image_begin", "pack_image_data_prefix", "pack_result_parts"):
        assert any(r.get("error") == "ValueError" for r in results[fn]), fn
        assert any("value" in r for r in results[fn]), fn
    # counters that wrap by design (ACK's consumed bytes, ids) are masked, never refused
    assert all("value" in r for r in results["pack_ack"] + results["pack_resend"])
