"""The serve loop in the firmware's GC heap: device/detect.py on MicroPython 1.11 (float32)
with `-X heapsize=` set to what the firmware leaves a script, for 100 images per payload mode
(read_buf_len 32768), without MemoryError; every RESULT still checked against the host. Prints
the peak of live GC data (sampled after a collection where the firmware allocates).

The heap: CONFIG_MAIXPY_GC_HEAP_SIZE = 0x80000 (512 KiB) in every projects/*/config_*.mk of
sipeed/MaixPy-v1; maixpy_main.c mallocs it and hands it to gc_init(). What the firmware itself
keeps there before main.py runs (read in maixpy_main.c and friends): the REPL UART object and its
receive ring (machine_uart.c: m_new of read_buf_len + 1 = 2,049 bytes), the sys.path/argv
lists, _boot.py's module (os, sys, time imported; its own names deleted), the VFS mount objects
of /flash and /sd, the stdio and readline state: a few KiB. FIRMWARE_KEEPS reserves 32 KiB
for it (an upper bound with margin, not a measurement). Everything the scripts and the firmware
allocate for them (module bytecode, the serve UART's ring, Image pixels and pix_ai planes via
xalloc = gc_alloc, KPU output lists) is in the interpreter's heap here as on the board."""
import numpy as np
import pytest

from device import protocol as P
import mpy_board as B
import mpy_harness as H

pytestmark = H.needs_micropython

FIRMWARE_KEEPS = 32 * 1024
# CanMV (kendryte/canmv main and feat/kpu): CONFIG_MAIXPY_GC_HEAP_SIZE = 0xBB9B0 in every
# projects/*/config_*.mk (750 KiB), the same maixpy_main.c start-up.
CANMV_GC_HEAP = 0xBB9B0
IMAGES = 100


def run_mode(tmp_path, fmt, width, height, out_shape, heap, pad=0):
    rng = np.random.RandomState(7)
    W, H_ = width, height
    cfg = B.config(W, H_, "yolo2", out_shape, threshold=0.3)
    stream = B.Stream(cfg)
    stream.frame(P.T_HELLO, P.pack_json({"proto": 1}))
    distinct = []
    for _ in range(10):
        rgb = B.rgb565_image(rng, W, H_)
        if fmt == P.FMT_JPEG:
            distinct.append(B.jpeg_of(rgb, tmp_path))
        else:
            px = B.to_rgb565(rgb)
            distinct.append((px, px))
    for k in range(IMAGES):
        payload, px = distinct[k % len(distinct)]
        stream.image(k + 1, fmt, payload, px, flags=P.F_INPUT_CRC if k < 3 else 0)
    stream.frame(P.T_EXIT)
    line_in, line_out = tmp_path / "line_in", tmp_path / "line_out"
    stream.write(line_in)
    out = H.run("detect_cases.py", {"op": "serve", "cfg": cfg, "line_in": str(line_in),
                                    "line_out": str(line_out), "jpeg_dir": str(tmp_path),
                                    "pad": pad},
                heapsize=heap, timeout=300)
    n, diffs, results, errors = B.check_results(cfg, stream, B.board_frames(line_out))
    boxes = sum(len(r[0][1]["boxes"]) for r in results.values())
    return out, n, diffs, errors, boxes


# (firmware, GC heap, model input, output): MaixPy's 512 KiB holds a 224x160 model's serve
# mode; the example model (320x224: RGB565 image 143,360 B + pix_ai planes 215,040 B, both
# xalloc'ed in the GC heap, + 2,100 output float objects) needs CanMV's 750 KiB.
FRAGMENTS = pytest.mark.xfail(strict=True, reason=(
    "open: in CanMV's heap a 320x224 JPEG serve fails within a few images: each JPEG's decoded "
    "Image and pix_ai planes (143,360 + 215,040 B) are new GC blocks and the heap fragments "
    "(docs/design.md, Board memory)"))
# Open (docs/design.md, "Board memory"): with a JPEG or rgb565z payload the serve loop runs
# at 80-85 % of the heap and fails or not by where the big blocks' holes fall, which moves
# with the bytecode, the paths and the environment (on a board: with the firmware build).
# Measured: 0-3 of 5 layouts pass. Not a guarantee these runs can give yet.
LAYOUT_BOUND = pytest.mark.xfail(strict=False, reason=(
    "open: near-full heap, outcome depends on the heap layout (docs/design.md, Board memory)"))
RUNS = [pytest.param("MaixPy", H.MAIXPY_GC_HEAP, 224, 160, (30, 5, 7), P.FMT_RGB565,
                     id="MaixPy-rgb565"),
        pytest.param("MaixPy", H.MAIXPY_GC_HEAP, 224, 160, (30, 5, 7), P.FMT_JPEG,
                     id="MaixPy-jpeg", marks=LAYOUT_BOUND),
        pytest.param("CanMV", CANMV_GC_HEAP, 320, 224, (30, 7, 10), P.FMT_RGB565,
                     id="CanMV-rgb565"),
        pytest.param("CanMV", CANMV_GC_HEAP, 320, 224, (30, 7, 10), P.FMT_JPEG,
                     id="CanMV-jpeg", marks=FRAGMENTS),
        # rgb565z: the RGB565 Image plus, per image, a DecompIO, its 16 KiB window and the
        # segment buffer (device/zinflate.py)
        pytest.param("MaixPy", H.MAIXPY_GC_HEAP, 224, 160, (30, 5, 7), P.FMT_RGB565Z,
                     id="MaixPy-rgb565z", marks=LAYOUT_BOUND),
        pytest.param("CanMV", CANMV_GC_HEAP, 320, 224, (30, 7, 10), P.FMT_RGB565Z,
                     id="CanMV-rgb565z", marks=LAYOUT_BOUND)]


@pytest.mark.parametrize("firmware,gc_heap,width,height,out_shape,fmt", RUNS)
def test_serve_loop_fits_the_gc_heap(tmp_path, firmware, gc_heap, width, height, out_shape, fmt):
    heap = gc_heap - FIRMWARE_KEEPS
    out, n, diffs, errors, boxes = run_mode(tmp_path, fmt, width, height, out_shape, heap)
    print("memory, %s %dx%d %s: %d images, %d boxes, in a %d-byte GC heap (%s's %d minus "
          "%d): peak live GC data %d bytes (%.0f%% of the heap)"
          % (firmware, width, height, P.FORMAT_NAMES[fmt], out["result"]["images"], boxes,
             out["heap"], firmware, gc_heap, FIRMWARE_KEEPS, out["peak"],
             100.0 * out["peak"] / out["heap"]))
    assert not errors, errors[:3]
    assert out["result"]["images"] == n == IMAGES
    assert not diffs, diffs[:3]
    assert boxes > IMAGES, "the outputs must give boxes (the decoder's memory counts)"
    assert out["heap"] <= heap and 0 < out["peak"] < out["heap"]
