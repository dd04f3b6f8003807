"""The virtual board's GC heap (host/vboard/gcheap.py): board code's buffers, images and KPU
outputs counted at MicroPython 1.11's sizes on the K210 (RV64, 32-byte blocks), MemoryError
with the firmware's text where the heap would run out, and the serve loop inside each
profile's heap. Fragmentation is not modelled: tests/test_mpy_memory.py runs device/ in the
real interpreter's heap for that."""
import io
import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
import serial
from PIL import Image as PILImage

from conftest import serve_mode_board, tool_env
from serve_client import ServeClient
from device import protocol as P
from host import firmware, ncc, quantize
from host.rawrepl import RawRepl
from host.vboard import gcheap
from host.vboard.launcher import provision, start_board

pytestmark = pytest.mark.timeout(600)

PROFILES = ["canmv-v5", "maixpy-v4"]
# py/gc.c: gc_init on RV64 (32-byte blocks, finaliser table): 0xBB9B0 -> 5,933 ATB bytes,
# 0x80000 -> 4,048, each covering 4 blocks
POOLS = {"canmv-v5": 5933 * 4 * 32, "maixpy-v4": 4048 * 4 * 32}


def _pool(profile):
    return gcheap.pool_bytes(firmware.get_profile(profile)["gc_heap"])


def test_the_pool_is_what_gc_init_leaves_of_each_firmwares_heap():
    assert {p: _pool(p) for p in PROFILES} == POOLS


@pytest.fixture(params=PROFILES)
def repl(request, tmp_path):
    state = str(tmp_path / "state")
    provision(state)
    with start_board(state, profile=request.param, log_rate=0) as handle:
        with serial.Serial(handle.port, 115200, timeout=0.2) as ser:
            r = RawRepl(ser)
            r.enter()
            yield request.param, r


def test_the_heap_is_gc_inits_pool_and_a_bytearray_costs_its_blocks(repl):
    profile, r = repl
    out = r.exec("import gc, micropython\nmicropython.mem_info()\ngc.collect()\n"
                 "f0 = gc.mem_free()\nb = bytearray(10000)\nf1 = gc.mem_free()\ndel b\n"
                 "f2 = gc.mem_free()\ngc.collect()\nprint(f0, f1, f2, gc.mem_free())")
    assert "GC: total: %d, used: " % _pool(profile) in out
    f0, f1, f2, f3 = (int(v) for v in out.split("\r\n")[-2].split())
    # mp_obj_array_t (one 32-byte block) + 10000 bytes rounded up to blocks
    assert f0 - f1 == 32 + 10016
    assert f2 == f1            # nothing comes back before a collection
    assert f3 == f0


def test_an_allocation_past_the_heap_is_the_firmwares_memory_error(repl):
    profile, r = repl
    n = _pool(profile)
    _, err = r.exec_raw("b = bytearray(%d)" % n)
    assert err.endswith(b"MemoryError: memory allocation failed, allocating %d bytes\r\n" % n)
    # bytes(n) asks for n + 1 bytes first (the vstr and its null byte)
    _, err = r.exec_raw("b = bytes(%d)" % n)
    assert err.endswith(b"MemoryError: memory allocation failed, allocating %d bytes\r\n"
                        % (n + 1))
    # image buffers come from omv's xalloc, which raises its own text
    _, err = r.exec_raw("import image\nimg = image.Image(size=(1024, 512))")
    assert err.endswith(b"MemoryError: Out of normal MicroPython Heap Memory! Please reduce "
                        b"the resolution of the image you are running this algorithm on to "
                        b"bypass this issue!\r\n")
    # the REPL UART's ring: m_del of the old one, then m_new(byte, read_buf_len + 1)
    out = r.exec("import gc, machine\nhold = bytearray(gc.mem_free() - 8192)\n"
                 "u = machine.UART.repl_uart()\n"
                 "try:\n    u.init(115200, 8, None, 1, read_buf_len=30000)\n"
                 "except MemoryError as e:\n    print(e)\n"
                 "hold = None\nu.init(115200, 8, None, 1, read_buf_len=30000)\n"
                 "print(gc.mem_free() >= 0)")
    assert out == "memory allocation failed, allocating 30001 bytes\r\nTrue\r\n"
    # garbage is collected when an allocation does not fit (gc_alloc collects once): two
    # buffers of 60 % of the heap one after the other, no gc.collect() in between
    third = n * 3 // 5
    out = r.exec("b = bytearray(%d)\nb = None\nb = bytearray(%d)\nprint(len(b))"
                 % (third, third))
    assert out == "%d\r\n" % third


def test_images_planes_and_stream_reads_count_at_the_firmwares_sizes(repl):
    profile, r = repl
    packed = zlib.compress(bytes(range(256)) * 8)[2:-4]          # raw deflate, 2 KiB out
    out = r.exec(textwrap.dedent("""\
        import gc, image, uio, uzlib
        gc.collect()
        f0 = gc.mem_free()
        img = image.Image(size=(100, 20))
        f1 = gc.mem_free()
        img.pix_to_ai()
        f2 = gc.mem_free()
        d = uzlib.DecompIO(uio.BytesIO(%r), -10)
        f3 = gc.mem_free()
        b = d.read(1000)
        f4 = gc.mem_free()
        print(f0 - f1, f1 - f2, f2 - f3, f3 - f4)
        """ % packed))
    pixels, obj = 100 * 20 * 2, 64                 # xalloc(w*h*2), py_image_obj_t (40 B)
    planes = 128 * 20 * 3                          # rows padded to 64 bytes per plane
    decompio = gcheap.blocks(1344) + 1024          # state, then the 1 KiB window
    read = 32 + gcheap.blocks(1001)                # mp_obj_str_t + the vstr's 1000 + 1
    # the BytesIO and its bytes are small objects this heap does not count one by one
    assert out == "%d %d %d %d\r\n" % (pixels + obj, planes, decompio, read)


# --------------------------------------------------------------------------- serve loop
# conv + relu + 2x2 max pool per halving (KPU-friendly, as examples/face/model.py):
# H x W -> H/32 x W/32 with 30 channels (5 anchors x 6), the example's output shape for its
# 320x224 input
_MAKE_TFLITE = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    path, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.RandomState(0)
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [1, h, w, 3], name="Input_image")
        y = x
        for c in (8, 8, 8, 8, 30):
            k = tf.constant(rng.uniform(-0.3, 0.3, (3, 3, int(y.shape[-1]), c))
                            .astype(np.float32))
            y = tf.nn.relu(tf.nn.conv2d(y, k, [1, 1, 1, 1], "SAME"))
            y = tf.nn.max_pool(y, [1, 2, 2, 1], [1, 2, 2, 1], "SAME")
        y = tf.identity(y, name="out")
        with tf.Session() as s:
            with open(path, "wb") as f:
                f.write(tf.lite.TFLiteConverter.from_session(s, [x], [y]).convert())
""")


def _tflite(tmp_path, h, w):
    path = str(tmp_path / ("m%dx%d.tflite" % (w, h)))
    subprocess.run([sys.executable, "-c", _MAKE_TFLITE, path, str(h), str(w)],
                   env=tool_env(), check=True, capture_output=True, timeout=300)
    return path


def _calib(h, w):
    return np.random.RandomState(1).randint(0, 256, (2, 3, h, w)).astype(np.uint8)


def _serve(state, cfg, profile, w, h, images):
    """Serve mode on the board: INFO, then each (fmt, payload); -> (INFO, [RESULT or ERROR
    frame (type, dict)])."""
    with start_board(state, profile=profile, log_rate=0) as handle:
        with serial.Serial(handle.port, 115200, timeout=0.05) as ser:
            client = ServeClient(ser, cfg["baud"])
            info = client.hello(timeout=180.0, quiet=5.0)
            answers = [client.image(k, fmt, 0, w, h, payload, info["chunk"], timeout=180.0,
                                    quiet=5.0)
                       for k, (fmt, payload) in enumerate(images, 1)]
            client.exit(timeout=180.0)
    return info, answers


def _sessions(pixels, w, h):
    """One serve session per payload mode (a host sends one mode per session): four RGB565
    images, four JPEGs (of noise: the largest JPEG of that size). Four: the board keeps its
    last RESULT_CACHE (2) RESULTs, so the 3rd and 4th image see the same steady heap."""
    rgb = np.random.RandomState(3).randint(0, 256, (h, w, 3)).astype(np.uint8)
    jpeg = io.BytesIO()
    PILImage.fromarray(rgb).save(jpeg, "JPEG", quality=90)
    return [[(P.FMT_RGB565, pixels)] * 4, [(P.FMT_JPEG, jpeg.getvalue())] * 4]


def _assert_served_within_the_heap(info, answers, profile, w, h):
    pool = _pool(profile)
    assert 0 <= info["mem_free"] < pool, info
    for ftype, answer in answers:
        assert ftype == P.T_RESULT, answer
        # the Image and its planes at least are counted, and the count never goes negative
        assert 0 <= answer["mem_free"] <= pool - (w * h * 2 + ((w + 63) & ~63) * h * 3)
    # steady once the RESULTs kept for RESEND are all there: nothing leaks image by image
    assert answers[-1][1]["mem_free"] == answers[-2][1]["mem_free"], answers


@pytest.mark.slow
def test_serve_loop_of_the_example_sized_model_fits_canmv_v5s_heap(tmp_path):
    """CanMV feat/kpu, the example's 320x224 input and 30x7x10 output: RGB565 and JPEG
    sessions answered, mem_free (INFO, every RESULT) never below 0."""
    w, h = 320, 224
    km = str(tmp_path / "m.kmodel")
    quantize.compile_kmodel(_tflite(tmp_path, h, w), km, _calib(h, w), {"scale": "0-1"})
    with open(km, "rb") as f:
        data = f.read()
    state, cfg, pixels = serve_mode_board(tmp_path, data, w, h, [[30, h // 32, w // 32]],
                                          "canmv-v5")
    for images in _sessions(pixels, w, h):
        info, answers = _serve(state, cfg, "canmv-v5", w, h, images)
        _assert_served_within_the_heap(info, answers, "canmv-v5", w, h)


NCC = ncc.VENV_NCC if os.path.isfile(ncc.VENV_NCC) else None
needs_ncc = pytest.mark.skipif(NCC is None, reason="no .venv/bin/ncc: run `make ncc`")


def _v4(tmp_path, h, w):
    km = str(tmp_path / ("m%dx%d.kmodel" % (w, h)))
    ncc.compile_kmodel(_tflite(tmp_path, h, w), km, _calib(h, w), {"scale": "0-1"}, ncc=NCC)
    with open(km, "rb") as f:
        return f.read()


@pytest.mark.slow
@needs_ncc
def test_serve_loop_in_maixpy_v4s_heap_fits_224x160_and_refuses_the_examples_320x224(
        tmp_path):
    """MaixPy-v1's 512 KiB: a 224x160 model (test_mpy_memory.py's MaixPy size) serves RGB565
    and JPEG within the heap; the example's 320x224 does not fit there at all (docs/design.md,
    Board memory: Image + planes 358 KB, outputs, scripts): each image is E_NO_MEMORY with the
    firmware's MemoryError text, and the session goes on."""
    w, h = 224, 160
    state, cfg, pixels = serve_mode_board(tmp_path / "small", _v4(tmp_path, h, w), w, h,
                                          [[30, h // 32, w // 32]], "maixpy-v4", version=4)
    for images in _sessions(pixels, w, h):
        info, answers = _serve(state, cfg, "maixpy-v4", w, h, images)
        _assert_served_within_the_heap(info, answers, "maixpy-v4", w, h)

    w, h = 320, 224
    state, cfg, pixels = serve_mode_board(tmp_path / "example", _v4(tmp_path, h, w), w, h,
                                          [[30, h // 32, w // 32]], "maixpy-v4", version=4)
    info, answers = _serve(state, cfg, "maixpy-v4", w, h, [(P.FMT_RGB565, pixels)] * 2)
    assert info["model_loaded"] and info["mem_free"] >= 0, info
    for ftype, answer in answers:
        assert ftype == P.T_ERROR and answer["code"] == P.E_NO_MEMORY, answer
        assert "Out of normal MicroPython Heap Memory" in answer["reason"] or \
            "memory allocation failed, allocating" in answer["reason"], answer
