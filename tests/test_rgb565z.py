"""rgb565z (docs/protocol.md): the host's deflate segments (host/rgb565z.py) inflated by the
board's receive path (device/zinflate.py) - on MicroPython 1.11's own uzlib and on the virtual
board's uzlib shim (host/vboard/shims/uzlib.py), which must agree case by case, including how
a corrupt, cut or mis-split stream fails."""
import binascii
import io
import sys
import types
import zlib

import numpy as np
import pytest

from device import protocol as P
from device import zinflate
from host import rgb565z
from host.vboard import gcheap
from host.vboard.shims import uzlib as uzlib_shim

import mpy_board as B
import mpy_harness as H

sys.path.insert(0, H.MPY_DIR)
import zinflate_cases  # noqa: E402  (the same driver the interpreter runs)

SEG = 984          # the board's chunk at read_buf_len 4096


@pytest.fixture
def shim(monkeypatch):
    """device/zinflate.py on CPython with the virtual board's uzlib."""
    monkeypatch.setattr(zinflate, "uzlib", uzlib_shim.build(None))
    return zinflate


def photo(seed, w=64, h=48):
    return B.to_rgb565(B.rgb565_image(np.random.RandomState(seed), w, h))


def noise(seed, w=64, h=48):
    return np.random.RandomState(seed).randint(0, 256, 2 * w * h, dtype=np.uint8).tobytes()


def case(raw, segs):
    return {"raw_total": len(raw), "seg": SEG, "wbits": P.Z_WBITS,
            "segments": [binascii.hexlify(s).decode() for s in segs]}


def cases():
    """(name, raw, segments, expected outcome kind or None for exact bytes)."""
    smooth, rand = photo(1), noise(2)
    good = rgb565z.segments(smooth, SEG)
    out = [("photo", smooth, good, None), ("noise", rand, rgb565z.segments(rand, SEG), None),
           ("flat", bytes(6144), rgb565z.segments(bytes(6144), SEG), None)]
    cut = list(good)
    cut[1] = cut[1][:len(cut[1]) // 2]                  # a segment cut short
    out.append(("cut", smooth, cut, "fail"))
    flipped = [bytearray(s) for s in good]
    flipped[0][3] ^= 0xFF                               # corrupt deflate data
    out.append(("corrupt", smooth, [bytes(s) for s in flipped], "fail"))
    whole = zlib.compressobj(9, zlib.DEFLATED, -P.Z_WBITS)
    stream = whole.compress(smooth) + whole.flush()      # not cut at the segment boundaries
    out.append(("missplit", smooth, [stream[i:i + SEG] for i in range(0, len(stream), SEG)],
                "fail"))
    far = zlib.compressobj(9, zlib.DEFLATED, -15)
    rep = noise(3, 96, 96) * 2                          # repeats 18 KiB back: beyond 16 KiB
    out.append(("far", rep, [far.compress(rep[i:i + SEG]) + far.flush(zlib.Z_SYNC_FLUSH)
                             for i in range(0, len(rep), SEG)], "fail"))
    return out


def test_segments_fit_the_frame_bound_and_compress_photos():
    from scipy import misc       # scipy's raccoon photograph (public domain), 1024x768
    smooth = B.to_rgb565(misc.face()[272:496, 352:672])
    rand = noise(5, 320, 224)
    for raw in (smooth, rand):
        segs = rgb565z.segments(raw, 4096)
        assert len(segs) == -(-len(raw) // 4096)
        assert max(len(s) for s in segs) <= 4096 + zinflate.SLACK
        assert 8 + max(len(s) for s in segs) <= P.DEVICE_MAX_PAYLOAD
    assert sum(map(len, rgb565z.segments(smooth, 4096))) < len(smooth) / 1.5
    # noise goes as stored blocks: a few bytes per segment over rgb565, never refused
    assert sum(map(len, rgb565z.segments(rand, 4096))) < len(rand) + 16 * 36


def test_shim_inflates_every_segment_from_its_own_frame(shim):
    for name, raw, segs, fails in cases():
        got = zinflate_cases.run_case(case(raw, segs))
        if fails:
            assert "error" in got, name
        else:
            assert got == {"crc": binascii.crc32(raw), "complete": True, "done": len(raw)}, name


def test_shim_counts_each_decompressor_in_the_gc_heap_until_a_collection(monkeypatch):
    heap = gcheap.GcHeap(gcheap.BLOCK * 40000)
    board = types.SimpleNamespace(heap=heap)
    monkeypatch.setattr(zinflate, "uzlib", uzlib_shim.build(board))
    before = heap.used()
    inf = zinflate.Inflater(6144, SEG, P.Z_WBITS)
    assert heap.used() - before == (gcheap.blocks(uzlib_shim.STATE_BYTES)
                                    + gcheap.blocks(1 << P.Z_WBITS))
    del inf
    assert heap.used() > before         # as on the board: freed by a collection only
    heap.collect()
    assert heap.used() == before


@H.needs_micropython
def test_firmware_uzlib_and_shim_agree(shim):
    named = cases()
    on_board = H.run("zinflate_cases.py", [case(raw, segs) for _n, raw, segs, _f in named])
    for (name, raw, segs, fails), board in zip(named, on_board):
        host = zinflate_cases.run_case(case(raw, segs))
        if name == "far":
            # zlib checks a distance against the window plus what the same read wrote
            # (host/vboard/shims/uzlib.py): the shim may fail a segment later
            assert host["error"] == board["error"] == "corrupt", (host, board)
            assert 0 <= host["segment"] - board["segment"] <= 1, (host, board)
            continue
        assert host == board, (name, host, board)
        if fails:
            assert "error" in board, name
        else:
            assert board["crc"] == binascii.crc32(raw) and board["complete"], name


def test_shim_follows_moduzlib_headers_and_errors():
    m = uzlib_shim.build(None)
    raw = noise(6, 40, 40) * 3
    z = zlib.compressobj(9, zlib.DEFLATED, -12)
    body = z.compress(raw) + z.flush()
    assert m.DecompIO(io.BytesIO(body), -12).read(len(raw) + 5) == raw   # short only at the end
    with pytest.raises(EOFError):
        m.DecompIO(io.BytesIO(body[:len(body) // 2]), -12).read(len(raw))
    far = m.DecompIO(io.BytesIO(body), -11)                          # 3200 back, window 2048
    with pytest.raises(OSError):
        for _ in range(len(raw) // 64):
            far.read(64)
    with pytest.raises(ValueError, match="compression header"):
        m.DecompIO(io.BytesIO(b"\x78\x00" + body), 0)
    with pytest.raises(NotImplementedError):                         # 1 << CINFO = 128 bytes
        m.DecompIO(io.BytesIO(zlib.compress(raw)), 0)
    g = zlib.compressobj(9, zlib.DEFLATED, 16 + 12)
    gz = bytearray(g.compress(raw) + g.flush())
    assert m.DecompIO(io.BytesIO(bytes(gz)), 16 + 12).read() == raw
    gz[-6] ^= 1                                                      # crc32 trailer
    with pytest.raises(OSError):
        m.DecompIO(io.BytesIO(bytes(gz)), 16 + 12).read()
    assert m.decompress(zlib.compress(raw)) == raw


class _Unseekable(object):
    """A stream the shim can only pull one byte at a time from."""

    def __init__(self, data):
        self.f = io.BytesIO(data)

    def read(self, n):
        return self.f.read(n)


def test_shim_block_reads_take_exactly_the_bytes_of_one_byte_pulls():
    m = uzlib_shim.build(None)
    raw = photo(7, 64, 96) + noise(8, 32, 32)
    c = zlib.compressobj(9, zlib.DEFLATED, -P.Z_WBITS)
    body = c.compress(raw) + c.flush()
    fast_src, slow_src = io.BytesIO(body), _Unseekable(body)
    fast, slow = m.DecompIO(fast_src, -P.Z_WBITS), m.DecompIO(slow_src, -P.Z_WBITS)
    for n in (1, 7, 300, 1000, 4096, 9000, 50000):
        assert fast.read(n) == slow.read(n)
        assert fast_src.tell() == slow_src.f.tell()
    assert fast_src.tell() == len(body)
