"""The virtual board and device/ follow the firmware's C source (docs/firmware-source.md of the
team docs, summarised in host/vboard/README.md "Firmware facts"): CanMV's two KPU APIs,
`maix` vs `Maix`, JPEG decode errors, firmware prints in the UART stream.

Each test names the C function it holds the board to. Kmodels are built in subprocesses
(TensorFlow, then the nncase stage), never in this process.
"""
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import serial

from conftest import serve_mode_board
from device import protocol as P
from host import board_probe, firmware, quantize
from host.errors import UserError
from host.pixels import expand_rgb565
from host.rawrepl import RawRepl, ReplError
from host.upload import Uploader
from host.vboard.launcher import provision, start_board

pytestmark = pytest.mark.timeout(240)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 16, 16
C0, C1 = 4, 2          # channels of the two outputs

# one conv + relu per output, both from the same input
_MAKE_TFLITE = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    path, h, w, c0, c1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \\
        int(sys.argv[5])
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [1, h, w, 3], name="Input_image")
        outs = []
        for i, c in enumerate((c0, c1) if c1 else (c0,)):
            k = tf.constant(np.random.RandomState(i).uniform(-0.5, 0.5, (3, 3, 3, c))
                            .astype(np.float32))
            outs.append(tf.nn.relu(tf.nn.conv2d(x, k, [1, 1, 1, 1], "SAME"), name="out%d" % i))
        with tf.Session() as s:
            with open(path, "wb") as f:
                f.write(tf.lite.TFLiteConverter.from_session(s, [x], outs).convert())
""")

_TEST_IMAGE = ("import image\nimg = image.Image(size=(%d, %d))\n"
               "for i in range(%d):\n    img[i] = (i * 257) & 0xFFFF\nimg.pix_to_ai()\n"
               % (W, H, W * H))


def _planar():
    v = (np.arange(H * W, dtype=np.uint32) * 257) & 0xFFFF
    return expand_rgb565(v.reshape(H, W)).transpose(2, 0, 1)[None]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{'one': (kmodel, [output0]), 'two': (kmodel, [output0, output1])}, outputs as the
    Simulator computes them for the test image."""
    d = tmp_path_factory.mktemp("kmodel")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    calib = np.random.RandomState(1).randint(0, 256, (2, 3, H, W)).astype(np.uint8)
    out = {}
    for name, c1 in (("one", 0), ("two", C1)):
        tfl, km = str(d / (name + ".tflite")), str(d / (name + ".kmodel"))
        subprocess.run([sys.executable, "-c", _MAKE_TFLITE, tfl, str(H), str(W), str(C0),
                        str(c1)], env=env, check=True, capture_output=True, timeout=120)
        quantize.compile_kmodel(tfl, km, calib, {"scale": "0-1"})
        refs = [r.ravel().astype(np.float32) for r in quantize.simulate(km, _planar())[0]]
        with open(km, "rb") as f:
            out[name] = (f.read(), refs)
    return out


def _v5_build(base):
    """A build of `base` whose loader takes V5 (nncase 1.9 makes V5 only): reaches the
    older KPU APIs with a model the Simulator runs."""
    return dict(firmware.PROFILES[base], name=base + "-v5build", kmodel_versions=[3, 4, 5],
                heap_budget=4000000)


def _cfg(data, shapes):
    return {"model": {"source": "file", "path": "/flash/m.kmodel", "size": len(data),
                      "sha256": hashlib.sha256(data).hexdigest()},
            "outputs": [{"shape": list(s)} for s in shapes]}


def _board(tmp_path, data, profile):
    state = str(tmp_path / "state")
    provision(state, os.path.join(REPO, "device"), {"m.kmodel": data})
    return start_board(state, profile=profile, log_rate=0)


def _repl(handle):
    ser = serial.Serial(handle.port, 115200, timeout=0.2)
    repl = RawRepl(ser)
    repl.enter()
    return ser, repl


def _floats(line):
    return np.array(eval(line), np.float32)


# ---------------------------------------------------------------- CanMV feat/kpu
def test_feat_kpu_get_outputs_index_is_positional_and_device_reads_every_output(tmp_path,
                                                                                 models):
    """maix_kpu.c: k210_kpu_get_outputs reads the index only from one positional int: a
    keyword is ignored (output 0). device/kpu_model.py reads output i with get_outputs(i)."""
    data, refs = models["two"]
    with _board(tmp_path, data, "canmv-v5") as handle:
        ser, repl = _repl(handle)
        with ser:
            out = repl.exec(_TEST_IMAGE + textwrap.dedent("""
                from maix import KPU
                k = KPU()
                print(k.load('/flash/m.kmodel'), k.run(img))
                print(repr(k.get_outputs(1)))
                print(repr(k.get_outputs(index=1)))
                import detect
                m = detect.Model(%s)
                print(m.error)
                o = m.run(img)
                print(repr(o[0]))
                print(repr(o[1]))
                """ % json.dumps(_cfg(data, [(C0, H, W), (C1, H, W)]))), timeout=60)
    lines = out.split("\r\n")
    assert lines[0] == "None None"                          # load and run return None
    np.testing.assert_array_equal(_floats(lines[1]), refs[1])
    np.testing.assert_array_equal(_floats(lines[2]), refs[0])   # the keyword is ignored
    assert lines[3] == "None"
    np.testing.assert_array_equal(_floats(lines[4]), refs[0])
    np.testing.assert_array_equal(_floats(lines[5]), refs[1])


def test_feat_kpu_deinit_leaks_the_context_and_device_keeps_one_model_per_boot(tmp_path,
                                                                                models):
    """maix_kpu.c: k210_kpu_deinit frees the model buffer, never kpu_model_free: each
    load/deinit cycle loses the runtime's working memory. device/kpu_model.py loads a model
    once per boot on feat/kpu: a second serve session costs no heap."""
    data, _ = models["one"]
    cfg = json.dumps(_cfg(data, [(C0, H, W)]))
    with _board(tmp_path, data, "canmv-v5") as handle:
        ser, repl = _repl(handle)
        with ser:
            raw = repl.exec(textwrap.dedent("""
                from maix import KPU, utils
                f0 = utils.heap_free()
                k = KPU()
                k.load('/flash/m.kmodel')
                k.deinit()
                print(f0 - utils.heap_free())
                """))
            device = repl.exec(textwrap.dedent("""
                import detect
                from maix import utils
                m = detect.Model(%s)
                m.close()
                f1 = utils.heap_free()
                for i in range(3):
                    m = detect.Model(%s)
                    m.close()
                print(m.error, f1 - utils.heap_free())
                """ % (cfg, cfg)))
    assert int(raw) > 0                      # the leak the firmware has
    assert device.split() == ["None", "0"]   # no leak per session


# ---------------------------------------------------------------- CanMV releases (main)
def test_canmv_run_with_output_reads_output_0_only_and_multi_output_models_are_refused(
        tmp_path, models):
    """Maix_kpu.c: py_kpu_run_with_output: kpu_get_output(ctx, 0) only; a flat list with
    getlist=True, None without. A two-output model is refused on `canmv` by the device (at
    load), the board probe and `make kmodel` (firmware.check_outputs)."""
    data, refs = models["two"]
    with _board(tmp_path, data, _v5_build("canmv")) as handle:
        ser, repl = _repl(handle)
        with ser:
            out = repl.exec(_TEST_IMAGE + textwrap.dedent("""
                from maix import KPU
                k = KPU()
                k.load_kmodel('/flash/m.kmodel')
                print(k.run_with_output(img))
                print(repr(k.run_with_output(img, getlist=True)))
                import detect
                m = detect.Model(%s)
                print(m.error)
                """ % json.dumps(_cfg(data, [(C0, H, W), (C1, H, W)]))), timeout=60)
    lines = out.split("\r\n")
    assert lines[:2] == ["model size %d " % len(data), "model load succeed"]
    assert lines[2] == "None"
    np.testing.assert_array_equal(_floats(lines[3]), refs[0])
    assert "output 0 only" in lines[4]
    with pytest.raises(UserError, match="output 0 only.*2 outputs"):
        firmware.check_outputs("canmv", 2)
    firmware.check_outputs("canmv", 1)
    firmware.check_outputs("canmv-v5", 2)
    info = {"impl": "micropython", "api": firmware.API_CANMV_OLD, "profile": "canmv",
            "heap_free": 4000000}
    assert "output 0 only" in board_probe.problem(dict(info, profile=_v5_build("canmv")), data)


def test_canmv_deinit_without_init_yolo2_halts_the_board_and_device_never_does(tmp_path,
                                                                              models):
    """Maix_kpu.c: py_kpu_deinit: False without a model; with one it frees it, prints, then
    dereferences yolo2_rl, NULL unless init_yolo2 ran. device/kpu_model.py gives every model a
    1x1 region layer, so its close (and the firmware's free after a Ctrl-C) is safe."""
    data, _ = models["one"]
    cfg = json.dumps(_cfg(data, [(C0, H, W)]))
    with _board(tmp_path, data, _v5_build("canmv")) as handle:
        ser, repl = _repl(handle)
        with ser:
            out = repl.exec(textwrap.dedent("""
                import detect
                from maix import KPU, utils
                print(KPU().deinit())
                f0 = utils.heap_free()
                m = detect.Model(%s)
                m.close()
                print(m.error, f0 - utils.heap_free())
                """ % cfg))
            assert out.split("\r\n")[:3] == ["False", "model size %d " % len(data),
                                              "model load succeed"]
            assert out.split("\r\n")[3:5] == ["free kpu model buf succeed", "None 0"]
            with pytest.raises(ReplError):
                repl.exec_raw("from maix import KPU\nk = KPU()\nk.load_kmodel('/flash/m.kmodel')"
                              "\nk.deinit()", timeout=3.0)
            assert b"load access fault" in bytes(repl.received)


# ---------------------------------------------------------------- Maix vs maix
@pytest.mark.parametrize("profile,present,absent", [("canmv-v5", "maix", "Maix"),
                                                    ("maixpy-v4", "Maix", "maix")])
def test_maix_module_name_follows_the_firmware_and_every_reader_tries_both(
        tmp_path, models, profile, present, absent):
    """CanMV registers `maix` (mpconfigport.h: MP_QSTR_maix), MaixPy-v1 `Maix`. The device's
    INFO, the flash tool's board probe and its flash CRC find utils under either name."""
    data, _ = models["one"]
    with _board(tmp_path, data, profile) as handle:
        ser, repl = _repl(handle)
        with ser:
            out = repl.exec("import %s\nprint(%s.utils.heap_free() > 0)" % (present, present))
            assert out == "True\r\n"
            _, err = repl.exec_raw("import %s" % absent)
            assert b"ImportError" in err
            assert repl.exec("import kpu_model\nprint(kpu_model.maix_utils() is not None)") == \
                "True\r\n"
            info = board_probe.probe(repl, handle.port)
            assert info["heap_free"] > 0 and info["flash_read"] is True
            up = Uploader(repl, handle.port)
            up.setup()
            assert up.flash_crc(0x300000, 4096) is not None


# ---------------------------------------------------------------- JPEG decode errors
def test_corrupt_jpeg_gives_a_0x0_image_and_a_print(tmp_path, models):
    """imlib.c: imlib_load_image with from_bytes (data_type 2) raises nothing on a decode
    error; picojpeg_util.c prints "Failed loading source image!"; the image is 0x0."""
    data, _ = models["one"]
    with _board(tmp_path, data, "canmv-v5") as handle:
        ser, repl = _repl(handle)
        with ser:
            out = repl.exec("import image\nimg = image.Image(b'\\xff\\xd8' + bytes(40), "
                            "from_bytes=True)\nprint(img.width(), img.height())")
    assert out == "Failed loading source image!\r\n0 0\r\n"


# ---------------------------------------------------------------- firmware prints in serve mode
FIRMWARE_PRINTS = [b"kpu_net __del__\r\n", b"Failed loading source image!\r\n",
                   b"model size 262144 \r\n", b"model load succeed\r\n",
                   b"free kpu model buf succeed\r\n", b"free 1 kpu model buffer\n>>>\r\n",
                   b"error: Failed to allocate memory\r\n"]


def test_host_parser_skips_every_firmware_print_between_frames():
    parser = P.Parser()
    stream = b""
    for i, text in enumerate(FIRMWARE_PRINTS):
        stream += text + P.encode(P.T_LOG, i, b"log %d" % i)
    frames = parser.feed_all(stream)
    assert [(f[0], f[1]) for f in frames] == [(P.T_LOG, i) for i in range(len(FIRMWARE_PRINTS))]
    assert parser.dropped() == 0


def test_a_corrupt_jpeg_in_serve_mode_is_E_JPEG_and_the_session_goes_on(tmp_path, models):
    """On the real pty with the repo's device/ scripts on CanMV releases (which print the
    loader's lines before the serve banner): a corrupt JPEG makes the firmware print
    "Failed loading source image!" between frames at the serve baud; the host's session
    gets E_JPEG for it and the next image's RESULT."""
    from host.session import ImageJob, Session
    data, refs = models["one"]
    state, cfg, pixels = serve_mode_board(tmp_path, data, W, H, [[C0, H, W]], "canmv")
    with start_board(state, profile=_v5_build("canmv"), log_rate=0) as handle:
        with serial.Serial(handle.port, 115200, timeout=0.05) as ser:
            s = Session(ser, handle.port, cfg["baud"], timeout=30.0, booting=True,
                        boot_time=10.0)
            info = s.connect()
            assert info["model_loaded"] and info["api"] == firmware.API_CANMV_OLD
            jobs = [ImageJob(1, P.FMT_JPEG, 0, W, H, b"\xff\xd8" + bytes(300)),
                    ImageJob(2, P.FMT_RGB565, 0, W, H, pixels)]
            done = {}
            s.stream(lambda: jobs.pop(0) if jobs else None,
                     lambda job, result, error: done.__setitem__(job.image_id, (result, error)))
            s.close()
    assert done[1][0] is None and done[1][1]["code"] == P.E_JPEG
    assert done[2][1] is None
    np.testing.assert_array_equal(np.array(done[2][0]["outputs"][0]["data"], np.float32),
                                  refs[0])


# ---------------------------------------------------------------- machine.UART, sensor, lcd, image
@pytest.mark.parametrize("profile,tag", [("canmv-v5", "[CANMV]"), ("maixpy-v4", "[MAIXPY]")])
def test_uart_follows_machine_uart_c(tmp_path, profile, tag):
    """machine_uart.c: UARTHS is 4 (3 does not exist, "%b" prints it as a C bool); timeout,
    timeout_char and read_buf_len are keyword-only; read_buf_len + 1 is a uint16_t ring of
    that many slots (65535 wraps to no ring at all); baud <= 0x500000."""
    with start_board(str(tmp_path / "state"), profile=profile, log_rate=0) as handle:
        ser, repl = _repl(handle)
        with ser:
            out = repl.exec(textwrap.dedent("""
                import machine, utime
                U = machine.UART
                print(U.UART1, U.UART2, U.UART3, U.UARTHS)
                for i in (3, -1):
                    try:
                        U(i)
                    except ValueError as e:
                        print(e)
                u = U.repl_uart()
                try:
                    u.init(115200, 8, None, 1, 1000)
                except TypeError:
                    print('positional timeout: TypeError')
                try:
                    u.init(0x500001, 8, None, 1)
                except ValueError as e:
                    print(e)
                print(u.init(115200, 8, None, 1, read_buf_len=100))
                print(repr(u))
                """))
            lines = out.split("\r\n")
            assert lines[:7] == ["0 1 2 4", tag + "UARTtrue:does not exist",
                                 tag + "UARTtrue:does not exist", "positional timeout: TypeError",
                                 tag + "UART:invalid baudrate", "None",
                                 tag + "UART5:( baudrate=115200, bits=8, parity=None, stop=1)"]
            held = []
            for rbl in (100, 65535):
                # the host sends 300 bytes once the new ring exists (READY); the board counts
                # what its ring holds 1 s later (the bytes take 26 ms of line time)
                code = ("import machine, utime\nu = machine.UART.repl_uart()\n"
                        "u.init(115200, 8, None, 1, read_buf_len=%d)\nprint('READY')\n"
                        "utime.sleep_ms(1000)\nn = u.any()\nu.read(n)\n"
                        "u.init(115200, 8, None, 1)\nprint(n)\n" % rbl)
                repl.exec_started(code, timeout=20.0)
                repl.read_until(b"READY\r\n", timeout=20.0)
                ser.write(b"y" * 300)
                out, err = repl.exec_finish(timeout=20.0)
                assert err == b"", err
                held.append(int(out))
    assert held == [100, 0]


def test_sensor_lcd_and_image_constants_follow_the_source(tmp_path):
    """py_sensor.c: set_windowing takes w, h >= 8 and multiples of 8, returns True;
    sensor.h: GRAYSCALE 4, JPEG 5. lcd.h: colours are byte-swapped RGB565; py_lcd.c:
    draw_string draws RED on BLACK by default. py_image.c: `image.Image` is a function and
    the module has no pixel format constants."""
    from PIL import Image as PILImage
    state = str(tmp_path / "state")
    with start_board(state, profile="canmv-v5", log_rate=0) as handle:
        ser, repl = _repl(handle)
        with ser:
            out = repl.exec(textwrap.dedent("""
                import sensor, lcd, image
                sensor.reset()
                sensor.set_framesize(sensor.QVGA)
                print(sensor.RGB565, sensor.GRAYSCALE, sensor.JPEG)
                for roi in ((20, 20), (4, 4), (8, 8, 320, 8)):
                    try:
                        print(sensor.set_windowing(roi))
                    except ValueError as e:
                        print(e)
                print(lcd.RED, lcd.GREEN, lcd.BLUE, lcd.WHITE, lcd.BLACK)
                print([n for n in ('RGB565', 'GRAYSCALE', 'JPEG') if n in dir(image)])
                print(type(image.Image).__name__)
                lcd.init()
                lcd.clear()
                lcd.draw_string(0, 0, 'W')
                """))
    lines = out.split("\r\n")[1:]          # after sensor.reset()'s "find ov2640" line
    assert lines[0] == "2 4 5"
    assert lines[1:4] == ["value must be multiple of 8", "The selected window is too small",
                          "The selected window is outside the bounds of the frame"]
    assert lines[4] == "%d %d %d 65535 0" % (0x00F8, 0xE007, 0x1F00)
    assert lines[5] == "[]" and lines[6] == "function"
    frames = sorted(os.listdir(os.path.join(state, "lcd")))
    shown = PILImage.open(os.path.join(state, "lcd", frames[-1])).convert("RGB")
    colours = set(shown.crop((0, 0, 8, 12)).getdata())
    assert (0, 0, 0) in colours and any(r > 200 and g < 50 and b < 50 for r, g, b in colours)


# ---------------------------------------------------------------- CanMV's KPU free timer
def _interrupt_running_script(ser, repl, code, until, then=b""):
    """Run `code` (which loops forever) from the friendly REPL, Ctrl-C it once it loops, type
    `then` at once; returns what the board printed up to the end of the line that has `until`
    (past the firmware's 400 ms KPU timer)."""
    repl.enter()
    repl.exec("open('/flash/spin.py', 'w').write(%r)"
              % code.replace("while True:", "print('SPIN')\nwhile True:"))
    ser.write(b"\x02")                      # friendly REPL
    repl.read_until(b">>> ", timeout=10)
    ser.write(b"exec(open('/flash/spin.py').read())\r")
    repl.read_until(b"SPIN\r\n", timeout=30)
    ser.write(b"\x03" + then)
    text = repl.read_until(until, timeout=30)
    return text + repl.read_until(b"\n", timeout=10)


def test_canmv_ctrl_c_timer_frees_every_kpu_buffer_and_traps_without_init_yolo2(tmp_path,
                                                                               models):
    """kendryte/canmv machine_uart.c starts a timer on a Ctrl-C that interrupts code;
    maixpy_main.c: deinit_kpu_timer_cb then deinits every loaded model 400 ms later:
    without init_yolo2 that is the NULL dereference of py_kpu_deinit."""
    data, _ = models["one"]
    with _board(tmp_path, data, _v5_build("canmv")) as handle:
        ser, repl = _repl(handle)
        with ser:
            text = _interrupt_running_script(
                ser, repl, "from maix import KPU\nk = KPU()\nk.load_kmodel('/flash/m.kmodel')\n"
                           "k.init_yolo2([1.0, 1.0], anchor_num=1)\nwhile True:\n    pass\n",
                b"free 1 kpu model buffer")
            assert b"KeyboardInterrupt" in text
            assert b"free kpu model buf succeed" in text and b"free 1 kpu model buffer" in text
            text = _interrupt_running_script(
                ser, repl, "from maix import KPU\nk = KPU()\nk.load_kmodel('/flash/m.kmodel')\n"
                           "while True:\n    pass\n", b"load access fault")
            with pytest.raises(ReplError):
                repl.enter(timeout=2.0)


def test_feat_kpu_ctrl_c_timer_frees_held_objects_and_device_loads_after_it(tmp_path, models):
    """feat/kpu's timer frees every listed KPU object and buffer (not the contexts): a
    script's object is dangling afterwards. device/kpu_model.py waits past the timer before a
    load, so a serve session started right after a Ctrl-C keeps its model."""
    data, _ = models["one"]
    cfg = json.dumps(_cfg(data, [(C0, H, W)]))
    with _board(tmp_path, data, "canmv-v5") as handle:
        ser, repl = _repl(handle)
        with ser:
            text = _interrupt_running_script(
                ser, repl, "from maix import KPU\nk = KPU()\nk.load('/flash/m.kmodel')\n"
                           "while True:\n    pass\n", b"free 2 kpu buffers, size")
            ser.write(b"k.run(None)\r")
            repl.read_until(b"freed by the firmware after a Ctrl-C", timeout=10)
            # a session started at once after the Ctrl-C: its load waits the timer out
            text = _interrupt_running_script(
                ser, repl, "while True:\n    pass\n", b"kept ",
                then=b"import detect; m = detect.Model(%s); print('kept', m.error, "
                     b"m.k._model is not None)\r" % cfg.encode())
    # the timer ran (nothing listed yet), then the model loaded and stayed
    assert b"kept None True" in text
    assert text.index(b"free 0 kpu buffers") < text.index(b"kept None True")


# ---------------------------------------------------------------- what the firmware says it is
@pytest.mark.parametrize("profile,platform,machine,version", [
    ("maixpy-v4", "MaixPy", "Sipeed_M1 with kendryte-k210", (0, 6, 2)),
    ("canmv", "CanMV", "CanMV_Board with kendryte-k210", (1, 0, 5)),
    ("canmv-v5", "CanMV", "CanMV_Board with kendryte-k210", (1, 0, 5))])
def test_each_profile_reports_its_firmware_and_the_flash_probe_names_it(
        tmp_path, profile, platform, machine, version):
    """mpconfigport.h (MICROPY_PY_SYS_PLATFORM, MICROPY_HW_BOARD_NAME, MICROPY_VERSION_* =
    the firmware's BUILD_VERSION_*), moduos.c: os_uname_info, maixpy_main.c's boot log; the
    flash tool's probe names the profile from the KPU API it finds."""
    with start_board(str(tmp_path / "state"), profile=profile, log_rate=0) as handle:
        with serial.Serial(handle.port, 115200, timeout=0.2) as ser:
            repl = RawRepl(ser)
            repl.enter()
            repl.reset_board()                  # the whole boot log, from the first byte
            boot = repl.read_until(b">>> ", timeout=15)
            repl.enter()
            out = repl.exec("import sys, os\nprint(sys.platform, tuple(sys.implementation), "
                            "len(sys.implementation))\nprint(os.uname())")
            info = board_probe.probe(repl, handle.port)
    tag = "MAIXPY" if platform == "MaixPy" else "CANMV"
    assert ("[%s] Pll0:freq:" % tag).encode() in boot
    assert ("[%s] gc heap=" % platform).encode() in boot
    assert ("MicroPython v%s on " % ".".join(map(str, version))).encode() in boot
    assert ("; %s\r\n" % machine).encode() in boot
    lines = out.split("\r\n")
    assert lines[0] == "%s ('micropython', %r) 2" % (platform, version)
    assert "sysname='%s', nodename='%s', release='%s'" % (
        platform, platform, ".".join(map(str, version))) in lines[1]
    assert lines[1].endswith("machine='%s')" % machine)
    assert info["platform"] == platform and info["impl_version"] == list(version)
    assert info["profile"] == profile
    assert "%s %s" % (platform, ".".join(map(str, version))) in board_probe.describe(info)


# ---------------------------------------------------------------- two memory budgets
def test_gc_heap_sizes_are_the_sources_and_the_fit_judges_the_gc_heap_apart():
    """CONFIG_MAIXPY_GC_HEAP_SIZE: MaixPy-v1 0x80000, CanMV 0xBB9B0 (projects/*/
    config_defaults.mk). The fit report judges the serve loop's GC heap peak separately from
    the model's C heap, against the heap minus what the firmware keeps: the example's 320x224
    input with a 30x7x10 output fits CanMV's 750 KiB but not MaixPy's 512 KiB (measured by
    tests/test_mpy_memory.py), a 224x160 one fits MaixPy's; a VGA-sized input fits nowhere
    (and the warning says what to do)."""
    from host import k210fit
    assert firmware.PROFILES["maixpy-v4"]["gc_heap"] == 0x80000
    assert firmware.PROFILES["canmv"]["gc_heap"] == firmware.PROFILES["canmv-v5"]["gc_heap"] \
        == 0xBB9B0
    memory = {"total": 300000, "model": 250000}
    report, warnings = k210fit.fit_report(None, memory, [1, 3, 224, 320], "canmv-v5",
                                          output_values=30 * 7 * 10)
    assert report["fits_heap"] and report["fits_gc"] and 0 < report["jpeg_max_bytes"]
    assert report["gc_budget_bytes"] == 0xBB9B0 - k210fit.GC_FIRMWARE_KEEPS
    assert report["serve_gc_bytes"] > 320 * 224 * 5
    assert k210fit.serve_gc_peak(320, 224, 30 * 7 * 10, "jpeg",
                                 jpeg_bytes=report["jpeg_max_bytes"]) <= report["gc_budget_bytes"]
    report, warnings = k210fit.fit_report(None, memory, [1, 3, 224, 320], "maixpy-v4",
                                          output_values=30 * 7 * 10)
    assert not report["fits_gc"] and report["jpeg_max_bytes"] == 0
    assert any("GC heap" in w and "gc_heap_size" in w for w in warnings)
    report, warnings = k210fit.fit_report(None, memory, [1, 3, 160, 224], "maixpy-v4",
                                          output_values=30 * 5 * 7)
    assert report["fits_gc"] and report["jpeg_max_bytes"] > 0
    report, warnings = k210fit.fit_report(None, memory, [1, 3, 240, 320], "canmv-v5",
                                          output_values=1000 * 100)
    assert not report["fits_gc"]
    assert any("GC heap" in w and "gc_heap_size" in w for w in warnings)


def test_a_mobilenet_class_model_is_not_refused_by_a_guessed_c_heap(models):
    """The C heap budgets are estimates: without the board's own utils.heap_free() the
    flash tool does not refuse a ~250 KB kmodel for them (a reported heap still does)."""
    data = models["one"][0]
    data += bytes(250000 - len(data))       # the checks read the header and the size
    info = {"impl": "micropython", "api": firmware.API_CANMV_NEW, "profile": "canmv-v5",
            "heap_free": None}
    assert board_probe.problem(info, data) is None
    info["heap_free"] = 100000
    assert "heap" in board_probe.problem(info, data)


def test_every_shim_module_names_the_firmware_source_it_follows():
    import re
    shims = os.path.join(REPO, "host", "vboard", "shims")
    for name in sorted(os.listdir(shims)):
        if name.endswith(".py") and name not in ("__init__.py", "base.py"):
            with open(os.path.join(shims, name)) as f:
                text = f.read()
            assert re.search(r"\w+\.(c|h|py): \w+|\w+\.c\b", text), name
