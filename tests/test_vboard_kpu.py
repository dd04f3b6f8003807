"""The virtual board's KPU: real kmodels, nncase's Simulator, firmware profiles.

The kmodel is built in subprocesses (TensorFlow makes a tiny tflite, host.quantize runs the
nncase stage), never in this process, which may share a pytest session with TensorFlow tests.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import serial

from conftest import serve_mode_board
from serve_client import ServeClient
from host import quantize
from host.pixels import expand_rgb565
from host.rawrepl import RawRepl
from host.vboard.launcher import provision, start_board, write_flash

pytestmark = pytest.mark.timeout(180)

H, W, C = 16, 16, 4

# argv: (path, h, w, c) repeated: one conv + relu tflite per group
_MAKE_TFLITE = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    args = sys.argv[1:]
    for i in range(0, len(args), 4):
        path, h, w, c = args[i], int(args[i + 1]), int(args[i + 2]), int(args[i + 3])
        with tf.Graph().as_default():
            x = tf.placeholder(tf.float32, [1, h, w, 3], name="Input_image")
            k = tf.constant(np.random.RandomState(0).uniform(-0.5, 0.5, (3, 3, 3, c))
                            .astype(np.float32))
            y = tf.nn.relu(tf.nn.conv2d(x, k, [1, 1, 1, 1], "SAME"), name="out")
            with tf.Session() as s:
                with open(path, "wb") as f:
                    f.write(tf.lite.TFLiteConverter.from_session(s, [x], [y]).convert())
""")

def _board_test_image_planar(h, w):
    """The planar KPU input the board builds from the test image below (pixel i = RGB565
    value i * 257 & 0xFFFF), expanded with the firmware's rule."""
    v = (np.arange(h * w, dtype=np.uint32) * 257) & 0xFFFF
    return expand_rgb565(v.reshape(h, w)).transpose(2, 0, 1)[None]


YOLO_C = 30        # 5 anchors x (5 + 1 class): what the legacy run_yolo2 expects


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{'tiny': (kmodel bytes, simulator output for the test image), 'yolo': (bytes, ...)}"""
    d = tmp_path_factory.mktemp("kmodel")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    specs = {"tiny": C, "yolo": YOLO_C}
    tf_args = []
    for name, c in specs.items():
        tf_args += [str(d / (name + ".tflite")), str(H), str(W), str(c)]
    subprocess.run([sys.executable, "-c", _MAKE_TFLITE] + tf_args, env=env, check=True,
                   capture_output=True, timeout=120)
    out = {}
    calib = np.random.RandomState(1).randint(0, 256, (2, 3, H, W)).astype(np.uint8)
    planar = _board_test_image_planar(H, W)
    for name in specs:
        tfl, km = str(d / (name + ".tflite")), str(d / (name + ".kmodel"))
        quantize.compile_kmodel(tfl, km, calib, {"scale": "0-1"})
        reference = quantize.simulate(km, planar)[0][0]
        with open(km, "rb") as f:
            out[name] = (f.read(), reference.ravel().tolist())
    return out


@pytest.fixture(scope="module")
def kmodel(models):
    return models["tiny"]


def _repl(handle):
    ser = serial.Serial(handle.port, 115200, timeout=0.2)
    repl = RawRepl(ser)
    repl.enter()
    return ser, repl


_TEST_IMAGE = ("import image\nimg = image.Image(size=(%d, %d))\n"
               "for i in range(%d):\n    img[i] = (i * 257) & 0xFFFF\n" % (W, H, W * H))


def test_canmv_new_api_runs_the_simulator_from_flash_file_and_flash_chip(tmp_path, kmodel):
    data, reference = kmodel
    state = str(tmp_path / "state")
    provision(state, files={"m.kmodel": data})
    write_flash(state, 0x300000, data)
    with start_board(state, profile="canmv-v5", log_rate=0) as handle:
        ser, repl = _repl(handle)
        with ser:
            out = repl.exec(_TEST_IMAGE + textwrap.dedent("""
                from maix import KPU
                k = KPU()
                k.load('/flash/m.kmodel')
                try:
                    k.run(img)
                except ValueError:
                    print('no pix_to_ai: ValueError')
                try:
                    small = image.Image(size=(8, 8))
                    small.pix_to_ai()
                    k.run(small)
                except OSError:
                    print('wrong size: OSError')
                img.pix_to_ai()
                k.run(img)
                a = k.get_outputs()
                k.deinit()
                k2 = KPU()
                k2.load(0x300000, size=%d)
                k2.run(img)
                b = k2.get_outputs(index=0)
                print(len(a), a == b)
                print(repr(a))
                """ % len(data)), timeout=60)
    lines = out.split("\r\n")
    # feat/kpu's run prints the size mismatch (no newline) before raising (maix_kpu.c)
    assert lines[:3] == ["no pix_to_ai: ValueError",
                         "model input 16x16 but image is 8x8wrong size: OSError",
                         "%d True" % (C * H * W)]
    got = np.array(eval(lines[3]), dtype=np.float32)
    np.testing.assert_array_equal(got, np.array(reference, dtype=np.float32))


def test_maixpy_v4_rejects_a_v5_kmodel_with_error_2002(tmp_path, kmodel):
    data, _ = kmodel
    state = str(tmp_path / "state")
    provision(state, files={"m.kmodel": data})
    write_flash(state, 0x300000, data)
    with start_board(state, profile="maixpy-v4", log_rate=0) as handle:
        ser, repl = _repl(handle)
        with ser:
            for source in ("'/flash/m.kmodel'", "0x300000"):
                _, err = repl.exec_raw("import KPU as kpu\ntask = kpu.load(%s)" % source)
                assert b"ValueError: [MAIXPY]kpu: load error:2002, ERR_KMODEL_VERSION" in err
            # MaixPy-v1 has `Maix` (utils, no KPU) and no CanMV `maix` module
            assert repl.exec("import Maix\nprint('KPU' in dir(Maix))") == "False\r\n"
            _, err = repl.exec_raw("import maix")
            assert b"ImportError" in err


def test_model_larger_than_the_heap_budget_is_rejected(tmp_path, kmodel):
    data, _ = kmodel
    state = str(tmp_path / "state")
    # a valid V5 header followed by 1 MB: more than canmv-v5's model heap
    provision(state, files={"big.kmodel": data + bytes(1000000), "m.kmodel": data})
    with start_board(state, profile="canmv-v5", log_rate=0) as handle:
        ser, repl = _repl(handle)
        with ser:
            _, err = repl.exec_raw("from maix import KPU\nk = KPU()\nk.load('/flash/big.kmodel')")
            assert b"MemoryError: Model buffer memory allocation failed" in err
            before, after = repl.exec(
                "import utils\nf0 = utils.heap_free()\nk = KPU()\nk.load('/flash/m.kmodel')\n"
                "print(f0, utils.heap_free())").split()
            assert int(before) - int(after) > len(data)


def test_device_scripts_serve_an_image_end_to_end(tmp_path, kmodel):
    """The repo's unmodified device/ scripts on the virtual board: boot, serve mode at
    1.5 Mbaud with firmware log lines on the line, one raw RGB565 image, EXIT."""
    from device import protocol as P

    data, reference = kmodel
    state, cfg, pixels = serve_mode_board(tmp_path, data, W, H, [[C, H, W]], "canmv-v5")

    with start_board(state, profile="canmv-v5", log_rate=5.0) as handle:
        with serial.Serial(handle.port, 115200, timeout=0.05) as ser:
            client = ServeClient(ser, cfg["baud"], banner_timeout=20,
                                 passing=(P.T_ACK, P.T_LOG))
            info = client.hello()
            assert info["model_loaded"] and info["api"] == "canmv-new"
            ftype, result = client.image(7, P.FMT_RGB565, P.F_INPUT_CRC, W, H, pixels,
                                         info["chunk"])
            assert ftype == P.T_RESULT, result
            assert result["image_id"] == 7
            assert result["pixel_crc"] == P.crc32(pixels)
            assert result["crc_source"] == P.CRC_PIX_AI     # the firmware's own KPU input
            assert result["input_crc"] == P.planar_crc(pixels, W, H)
            np.testing.assert_array_equal(np.array(result["outputs"][0]["data"], np.float32),
                                          np.array(reference, np.float32))
            client.exit()
            ser.baudrate = 115200          # enter() retries until the board is back at it
            repl = RawRepl(ser)
            repl.enter()
            assert repl.exec("print('repl')") == "repl\r\n"


def test_ctrl_c_during_the_serve_mode_model_load_is_ignored(tmp_path, kmodel):
    """A host that takes a booting board for one at its REPL sends Ctrl-C; serve mode turns
    Ctrl-C off before it loads the model and says so, so the load (which starts the KPU worker
    here) completes: on CanMV an interrupted load leaks feat/kpu's context (docs/protocol.md,
    "Boot and interruption")."""
    data, _ = kmodel
    state, _, _ = serve_mode_board(tmp_path, data, W, H, [[C, H, W]], "canmv-v5")
    with start_board(state, profile="canmv-v5", log_rate=0) as handle:
        with serial.Serial(handle.port, 115200, timeout=0.05) as ser:
            repl = RawRepl(ser)
            repl.read_until(b"k210-deploy serve: loading the model\r\n", timeout=20)
            ser.write(b"\r\x03\x03")
            text = repl.read_until(b"k210-deploy serve: proto", timeout=20)
            line = repl.read_until(b"\r\n")
    assert b"KeyboardInterrupt" not in text and b"interrupted" not in text, text
    assert b"model ok" in line, line


def test_serve_mode_answers_malformed_frames_and_keeps_serving(tmp_path, kmodel):
    """Over the real pty, in serve mode: garbage with false syncs, a header claiming 1 GiB, a
    frame with a bad CRC, an unknown type, a short IMAGE_BEGIN, a frame cut short. Each gets
    an ERROR frame (crc, unknown_type, bad_payload); the board stays in serve mode and its
    next image gets the same RESULT as before."""
    import random
    import time
    from device import protocol as P
    from device import protocol_host as PH

    data, reference = kmodel
    state, cfg, pixels = serve_mode_board(tmp_path, data, W, H, [[C, H, W]], "canmv-v5")
    rnd = random.Random(3)

    with start_board(state, profile="canmv-v5", log_rate=0) as handle:
        with serial.Serial(handle.port, 115200, timeout=0.05) as ser:
            RawRepl(ser).read_until(b"k210-deploy serve: proto", timeout=20)
            RawRepl(ser).read_until(b"\r\n")
            ser.baudrate = cfg["baud"]     # HELLO until INFO below: the board switches 0.1 s on
            parser = P.Parser()
            seq = [0]

            def send(ftype, payload=b""):
                ser.write(P.encode(ftype, seq[0], payload))
                seq[0] += 1

            def collect(seconds):
                got = []
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    for t, _, p in parser.feed_all(ser.read(4096)):
                        if t == P.T_ERROR:
                            e = PH.unpack_error(p)
                            got.append((e["name"], e["ref"]))
                        elif t != P.T_ACK:
                            got.append((P.TYPE_NAMES.get(t, t), p))
                return got

            info = None
            for _ in range(20):
                send(P.T_HELLO, b"{}")
                got = collect(0.3)
                infos = [p for name, p in got if name == "INFO"]
                if infos:
                    info = PH.unpack_json(infos[0])
                    break
            assert info and "nack" in info["features"]

            def image(image_id):
                for ftype, payload in PH.image_frames(image_id, P.FMT_RGB565, 0, W, H, pixels,
                                                     chunk=info["chunk"]):
                    send(ftype, payload)
                got = collect(3.0)
                results = [PH.unpack_result(p) for name, p in got if name == "RESULT"]
                assert [r["image_id"] for r in results] == [image_id], got
                return results[0]

            first = image(1)
            blob = bytes(rnd.getrandbits(8) for _ in range(2000)).replace(b"\x00", P.SYNC)
            ser.write(blob)                                          # garbage, false syncs
            ser.write(P.header(P.T_IMAGE_DATA, 9, 1 << 30))          # over the length bound
            bad = bytearray(P.encode(P.T_IMAGE_BEGIN, 10, PH.pack_image_begin(
                2, P.FMT_RGB565, 0, W, H, len(pixels))))
            bad[15] ^= 0x40
            ser.write(bytes(bad))                                    # bad CRC
            send(0x7E, b"?")                                         # unknown type
            send(P.T_IMAGE_BEGIN, b"short")                          # payload does not parse
            got = collect(1.0)
            names = [n for n, _ in got]
            assert "crc" in names and "unknown_type" in names and "bad_payload" in names, got
            ser.write(P.encode(P.T_LOG, 11, b"x" * 100)[:40])         # cut short, then silence
            got = collect(1.5)
            assert "crc" in [n for n, _ in got], got                  # dropped once stale
            again = image(3)
            assert again["outputs"] == first["outputs"]
            assert again["pixel_crc"] == first["pixel_crc"] == P.crc32(pixels)
            np.testing.assert_array_equal(np.array(again["outputs"][0]["data"], np.float32),
                                          np.array(reference, np.float32))


def _custom_v5_build(base):
    """A hypothetical build of `base` whose loader takes V5: reaches the older KPU APIs."""
    from host import firmware
    return dict(firmware.PROFILES[base], name=base + "-v5build", kmodel_versions=[3, 4, 5],
                heap_budget=4000000)


def test_legacy_kpu_api(tmp_path, models):
    data, reference = models["tiny"]
    yolo, _ = models["yolo"]
    state = str(tmp_path / "state")
    provision(state, files={"y.kmodel": yolo})
    write_flash(state, 0x300000, data)
    with start_board(state, profile=_custom_v5_build("maixpy-v4"), log_rate=0) as handle:
        ser, repl = _repl(handle)
        with ser:
            out = repl.exec(_TEST_IMAGE + textwrap.dedent("""
                import KPU as kpu
                task = kpu.load(0x300000)
                kpu.set_outputs(task, 0, %d, %d, %d)
                img.pix_to_ai()
                fmap = kpu.forward(task, img)
                a = fmap[:]
                print(len(a), kpu.deinit(task))
                print(repr(a))
                t = kpu.load('/flash/y.kmodel')
                kpu.init_yolo2(t, 1.0, 0.3, 5, [1.0] * 10)
                print(kpu.run_yolo2(t, img))
                kpu.init_yolo2(t, 0.0, 0.3, 5, [1.0] * 10)
                objs = kpu.run_yolo2(t, img)
                print(len(objs), objs[0].classid(), len(objs[0].rect()))
                tasks = [kpu.load('/flash/y.kmodel') for i in range(4)]
                try:
                    kpu.load('/flash/y.kmodel')
                except ValueError as e:
                    print('sixth', e)
                """ % (W, H, C)), timeout=60)
    lines = out.split("\r\n")
    assert lines[0] == "%d True" % (C * H * W)
    np.testing.assert_array_equal(np.array(eval(lines[1]), np.float32),
                                  np.array(reference, np.float32))
    assert lines[2] == "None"                       # nothing found: None, not []
    assert lines[3] == "10 0 4"                     # at most 10 boxes
    assert lines[4].startswith("sixth [MAIXPY]kpu: load error:2009")


def test_canmv_old_kpu_api(tmp_path, models):
    data, reference = models["tiny"]
    state = str(tmp_path / "state")
    provision(state, files={"m.kmodel": data})
    with start_board(state, profile=_custom_v5_build("canmv"), log_rate=0) as handle:
        ser, repl = _repl(handle)
        with ser:
            out = repl.exec(_TEST_IMAGE + textwrap.dedent("""
                from maix import KPU
                k = KPU()
                print(sorted(n for n in dir(k) if not n.startswith('_')))
                k.load_kmodel('/flash/m.kmodel')
                img.pix_to_ai()
                a = k.run_with_output(img, getlist=True)
                print(repr(a))
                """), timeout=60)
    lines = out.split("\r\n")
    assert lines[0] == "['deinit', 'init_yolo2', 'load_kmodel', 'run_with_output']"
    # the loader's own prints (Maix_kpu.c: py_kpu_load_kmodel)
    assert lines[1:3] == ["model size %d " % len(data), "model load succeed"]
    np.testing.assert_array_equal(np.array(eval(lines[3]), np.float32),
                                  np.array(reference, np.float32))


# ---------------------------------------------------------------- the Simulator's worker process
_MAKE_SLOW_TFLITE = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    path, h, w, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [1, h, w, 3], name="Input_image")
        y = x
        for i in range(3):
            k = tf.constant(np.random.RandomState(i).uniform(-0.5, 0.5, (3, 3, y.shape[-1], c))
                            .astype(np.float32))
            y = tf.nn.relu(tf.nn.conv2d(y, k, [1, 1, 1, 1], "SAME"))
        y = tf.nn.max_pool(y, [1, 8, 8, 1], [1, 8, 8, 1], "VALID", name="out")
        with tf.Session() as s:
            with open(path, "wb") as f:
                f.write(tf.lite.TFLiteConverter.from_session(s, [x], [y]).convert())
""")
SLOW = (64, 64, 16)     # ~30 ms per run in nncase's simulator, within canmv-v5's heap budget


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("slow")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    tfl, km = str(d / "slow.tflite"), str(d / "slow.kmodel")
    subprocess.run([sys.executable, "-c", _MAKE_SLOW_TFLITE, tfl] + [str(v) for v in SLOW],
                   env=env, check=True, capture_output=True, timeout=120)
    h, w, _ = SLOW
    calib = np.random.RandomState(1).randint(0, 256, (2, 3, h, w)).astype(np.uint8)
    quantize.compile_kmodel(tfl, km, calib, {"scale": "0-1"})
    planar = np.random.RandomState(2).randint(0, 256, (1, 3, h, w)).astype(np.uint8)
    reference = quantize.simulate(km, planar)[0][0].ravel()
    with open(km, "rb") as f:
        return f.read(), planar.tobytes(), reference


def _fake_board(profile="canmv-v5"):
    import types
    from host.vboard import profiles
    return types.SimpleNamespace(profile=profiles.get(profile),
                                 session=types.SimpleNamespace(models=[]))


def test_the_simulator_runs_in_a_worker_and_the_board_thread_releases_the_gil(slow_model):
    """Simulator.run holds the GIL; in the board process it would stop the virtual UART's
    receive thread for the whole KPU time. Here a thread ticking every ms keeps ticking while
    the board thread waits for the worker; outputs are the simulator's, errors the firmware's."""
    import threading
    import time
    from host.vboard import kpu

    data, planar, reference = slow_model
    board = _fake_board()
    try:
        model = kpu.Model(board, data)
        worker = kpu.ENGINE.proc
        assert worker is not None and worker.poll() is None
        ticks, stop = [0], threading.Event()

        def tick():
            while not stop.is_set():
                time.sleep(0.001)
                ticks[0] += 1

        t = threading.Thread(target=tick)
        t.start()
        t0 = time.monotonic()
        for _ in range(5):
            outs = model.run(planar)
        wall_ms = (time.monotonic() - t0) * 1000.0
        stop.set()
        t.join()
        assert len(outs) == 1
        np.testing.assert_array_equal(outs[0], reference)
        assert ticks[0] >= 0.3 * wall_ms, (ticks[0], wall_ms)   # GIL held: ~1 tick per run
        with open("/proc/%d/maps" % worker.pid) as f:
            maps = f.read()
        assert "nncase" in maps and "tensorflow" not in maps

        model.free()                      # one model at a time fits canmv-v5's heap budget
        # nncase's load error surfaces as the firmware's format error, as before
        bad = bytearray(data)
        bad[200:len(bad) - 200] = bytes(len(bad) - 400)
        with pytest.raises(Exception) as err:
            kpu.Model(board, bytes(bad))
        exc_type, message = board.profile.format_error
        assert type(err.value).__name__ == exc_type and str(err.value) == message
        # another model, a soft reset (the session's models dropped unfreed), a new model
        other = kpu.Model(board, data)
        np.testing.assert_array_equal(other.run(planar)[0], reference)
        board.session.models = []
        third = kpu.Model(board, data)
        np.testing.assert_array_equal(third.run(planar)[0], reference)
        # the worker died: the next run starts another and reloads the model
        worker.kill()
        worker.wait()
        with pytest.raises(OSError, match="KPU worker"):
            third.run(planar)
        np.testing.assert_array_equal(third.run(planar)[0], reference)
        assert kpu.ENGINE.proc.pid != worker.pid
    finally:
        kpu.shutdown()
    assert kpu.ENGINE.proc is None


def _children(pid):
    out = []
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, task)) as f:
            out += [int(p) for p in f.read().split()]
    return out


def test_the_board_starts_its_kpu_worker_on_the_first_load_and_stops_it(tmp_path, kmodel):
    data, reference = kmodel
    state = str(tmp_path / "state")
    provision(state, files={"m.kmodel": data})
    with start_board(state, profile="canmv-v5", log_rate=0) as handle:
        ser, repl = _repl(handle)
        with ser:
            assert _children(handle.pid) == []               # lazily: no model loaded yet
            out = repl.exec(_TEST_IMAGE + textwrap.dedent("""
                from maix import KPU
                k = KPU()
                k.load('/flash/m.kmodel')
                img.pix_to_ai()
                k.run(img)
                print(repr(k.get_outputs()))
                """), timeout=60)
            np.testing.assert_array_equal(np.array(eval(out), np.float32),
                                          np.array(reference, np.float32))
            workers = _children(handle.pid)
            assert len(workers) == 1
            with open("/proc/%d/cmdline" % workers[0]) as f:
                assert "host.vboard.kpu_worker" in f.read()
            with open("/proc/%d/maps" % handle.pid) as f:
                assert "nncase" not in f.read()              # the board process: no nncase
    import time
    deadline = time.monotonic() + 5
    while os.path.exists("/proc/%d" % workers[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists("/proc/%d" % workers[0])        # gone with the board
