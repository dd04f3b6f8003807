"""Stock MaixPy-v1 for real: kmodel V4 from ncc v0.2, run by a virtual board with the
maixpy-v4 profile behind the legacy `import KPU as kpu` API (sipeed/MaixPy-v1 Maix_kpu.c).

Needs the real ncc v0.2 binary (`make ncc` puts it at .venv/bin/ncc); skipped without it.
Models are built in subprocesses (TensorFlow never shares this process with nncase).
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import serial

from conftest import REPO, assert_one_line_error, run_tool, tool_env
from host import kmodel, manifest as manifest_mod, ncc
from host.errors import UserError
from host.rawrepl import RawRepl
from host.vboard.launcher import provision, start_board, write_flash
from test_vboard_kpu import _TEST_IMAGE, H, W, _board_test_image_planar

NCC = ncc.VENV_NCC if os.path.isfile(ncc.VENV_NCC) else None
pytestmark = [pytest.mark.skipif(NCC is None, reason="no .venv/bin/ncc: run `make ncc`"),
              pytest.mark.timeout(900)]

C0, C1 = 4, 6   # channels of the two outputs of the test model

# argv: out_dir. One conv feeding two 1x1 convs: a model with two outputs (out0, out1).
_MAKE_TFLITE = textwrap.dedent("""
    import os, sys
    import numpy as np
    import tensorflow as tf
    rng = np.random.RandomState(0)
    def conv(x, k, c):
        w = tf.constant(rng.uniform(-0.5, 0.5, (k, k, int(x.shape[-1]), c)).astype(np.float32))
        return tf.nn.conv2d(x, w, [1, 1, 1, 1], "SAME")
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [1, %d, %d, 3], name="Input_image")
        y = tf.nn.relu(conv(x, 3, 8))
        a = tf.identity(conv(y, 1, %d), name="out0")
        b = tf.identity(conv(y, 1, %d), name="out1")
        with tf.Session() as s:
            with open(os.path.join(sys.argv[1], "two.tflite"), "wb") as f:
                f.write(tf.lite.TFLiteConverter.from_session(s, [x], [a, b]).convert())
""" % (H, W, C0, C1))


@pytest.fixture(scope="module")
def v4_model(tmp_path_factory):
    """(kmodel bytes, [output 0, output 1] of `ncc infer` on the board's test image)."""
    d = tmp_path_factory.mktemp("v4")
    subprocess.run([sys.executable, "-c", _MAKE_TFLITE, str(d)], env=tool_env(), check=True,
                   capture_output=True, timeout=120)
    path = str(d / "two.kmodel")
    calib = np.random.RandomState(1).randint(0, 256, (4, 3, H, W)).astype(np.uint8)
    ncc.compile_kmodel(str(d / "two.tflite"), path, calib, {"scale": "0-1"}, ncc=NCC)
    reference = ncc.infer(path, _board_test_image_planar(H, W), ncc=NCC)[0]
    with open(path, "rb") as f:
        return f.read(), reference


def _board(tmp_path, files=None, flash=None):
    state = str(tmp_path / "state")
    provision(state, files=files or {})
    if flash is not None:
        write_flash(state, 0x300000, flash)
    return start_board(state, profile="maixpy-v4", log_rate=0)


def _exec(handle, code):
    with serial.Serial(handle.port, 115200, timeout=0.2) as ser:
        repl = RawRepl(ser)
        repl.enter()
        # each forward is an `ncc infer` process: allow for a loaded machine (a hang guard)
        return repl.exec_raw(code, timeout=120)


def test_v4_kmodel_is_checked_and_lists_its_ops(v4_model):
    data, _ = v4_model
    info = kmodel.parse(data)
    assert info["version"] == 4 and info["target"] == "k210"
    assert info["model_size"] == len(data) and len(info["outputs"]) == 2
    assert [o["size"] for o in info["outputs"]] == [C0 * H * W * 4, C1 * H * W * 4]
    assert "KPUConv2D" in info["ops"]


def test_legacy_api_runs_v4_from_flash_and_file_with_every_output(tmp_path, v4_model):
    data, (ref0, ref1) = v4_model
    with _board(tmp_path, files={"m.kmodel": data}, flash=data) as handle:
        out, err = _exec(handle, _TEST_IMAGE + textwrap.dedent("""
            import KPU as kpu
            img.pix_to_ai()
            task = kpu.load(0x300000)
            try:
                kpu.forward(task, img)
            except OSError as e:
                print('unset:', e)
            print(kpu.set_outputs(task, 0, %(w)d, %(h)d, %(c0)d + 1))
            print(kpu.set_outputs(task, 2, %(w)d, %(h)d, %(c0)d))
            print(kpu.set_outputs(task, 0, %(w)d, %(h)d, %(c0)d),
                  kpu.set_outputs(task, 1, %(w)d, %(h)d, %(c1)d))
            fm = kpu.forward(task, img)
            a = fm[:]
            print(type(a).__name__, fm.w(), fm.h(), fm.ch(), fm.typecode(), fm.size())
            print(repr(list(a)))
            print(repr(list(kpu.get_output(task, 1)[:])))
            try:
                fm[0:4:2]
            except OSError as e:
                print('step:', e)
            print(kpu.deinit(task), kpu.deinit(task))
            t2 = kpu.load('/flash/m.kmodel')
            kpu.set_outputs(t2, 0, %(w)d, %(h)d, %(c0)d)
            kpu.set_outputs(t2, 1, %(w)d, %(h)d, %(c1)d)
            print(kpu.forward(t2, img, 1)[:] == kpu.get_output(t2, 1)[:])
            """ % {"w": W, "h": H, "c0": C0, "c1": C1}))
    assert err == b"", err
    lines = out.decode().split("\r\n")
    assert lines[0] == "unset: ERR_OUTPUTS_SET: need kpu.set_outputs() to set shape"
    assert lines[1] == ("[MAIXPY]kpu: set_outputs arg value error: w,c,ch size not match "
                        "output size")
    assert lines[2] == "False"
    assert lines[3] == "[MAIXPY]kpu: set_outputs arg value error:kmodel output idx 2 out of range"
    assert lines[4] == "False"
    assert lines[5] == "True True"
    assert lines[6] == "tuple %d %d %d f %d" % (W, H, C0, C0 * H * W * 4)
    # the board's KPU output is what `ncc infer` gives for the same planar input, bit for bit
    np.testing.assert_array_equal(np.array(eval(lines[7]), np.float32), ref0)
    np.testing.assert_array_equal(np.array(eval(lines[8]), np.float32), ref1)
    assert lines[9] == "step: only slices with step=1 (aka None) are supported"
    assert lines[10] == "True True"
    assert lines[11] == "True"


def test_canmv_main_runs_v4_too(tmp_path, v4_model):
    """CanMV releases (profile canmv) load V4: the same runtime behind maix.KPU."""
    data, (ref0, _) = v4_model
    state = str(tmp_path / "state")
    provision(state, files={"m.kmodel": data})
    with start_board(state, profile="canmv", log_rate=0) as handle:
        out, err = _exec(handle, _TEST_IMAGE + textwrap.dedent("""
            from maix import KPU
            k = KPU()
            k.load_kmodel('/flash/m.kmodel')
            img.pix_to_ai()
            print(repr(k.run_with_output(img, getlist=True)))   # output 0 only, a flat list
            """))
    assert err == b"", err
    # CanMV's loader prints "model size ..." first (Maix_kpu.c)
    (values,) = [l for l in out.decode().split("\r\n") if l.startswith("[")]
    np.testing.assert_array_equal(np.array(eval(values), np.float32), ref0)


def test_legacy_load_errors_follow_the_firmware(tmp_path, v4_model, tiny_build):
    data, _ = v4_model
    v5 = tiny_build.kmodel_bytes()
    with _board(tmp_path, files={"m.bin": data, "v5.kmodel": v5}) as handle:
        out, err = _exec(handle, textwrap.dedent("""
            import KPU as kpu
            for src in ('/flash/m.bin', 0, 1.5, '/flash/v5.kmodel', '/flash/none.kmodel'):
                try:
                    kpu.load(src)
                except Exception as e:
                    print('%s: %s' % (type(e).__name__, e))
            """))
    assert err == b""
    assert out.decode().split("\r\n")[:5] == [
        "ValueError: [MAIXPY]kpu: model format don't match, only supply .kmodel ",
        "ValueError: [MAIXPY]kpu: model_addr must > 0 ",
        "TypeError: [MAIXPY]kpu: only accept int or string",
        "ValueError: [MAIXPY]kpu: load error:2002, ERR_KMODEL_VERSION: only support kmodel "
        "V3/V4 now",
        "ValueError: [MAIXPY]kpu: load error:2005, ERR_READ_FILE: read file failed"]


def test_flash_refuses_a_v5_manifest_on_maixpy_naming_the_firmware_to_build_for(tmp_path,
                                                                               tiny_build):
    with _board(tmp_path) as handle:
        proc = run_tool("host/flash.py", "--manifest", tiny_build.path, "--port", handle.port,
                        "--no-progress", timeout=120)
    assert_one_line_error(proc, "refused before writing anything", "V5",
                          "make kmodel FIRMWARE=maixpy-v4")


def test_ncc_v02_calibrate_methods_and_missing_binary_are_refused_before_compiling(tmp_path):
    from host import firmware
    profile = firmware.get_profile("maixpy-v4")
    assert ncc.for_firmware(profile) == NCC
    assert ncc.for_firmware(firmware.get_profile("canmv-v5")) is None
    with pytest.raises(UserError, match="ncc v0.2 knows no_clip and l2 only"):
        ncc.for_firmware(profile, calibrate_method="kld_m2")
    with pytest.raises(UserError, match="firmware maixpy-v3 loads kmodel V3 only.*ncc v0.1"):
        ncc.for_firmware(firmware.get_profile("maixpy-v3"))


@pytest.mark.slow
def test_seed_model_through_v4_keeps_float_fidelity(tmp_path):
    """The original user's model, --firmware maixpy-v4 (no --ncc): float TF vs `ncc infer`
    on the held-out images, cos >= 0.998; the manifest records V4 and the ncc binary."""
    out = tmp_path / "out"
    proc = run_tool("host/convert.py", "--frozen-pb",
                    os.path.join(REPO, "examples", "seed-face", "Freeze_save.pb"),
                    "--input-size", "240x320", "--decoder", "grid", "--threshold", "0.7",
                    "--firmware", "maixpy-v4", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "convert_report.json").read_text())
    assert report["quantization"]["mean_cos"] >= 0.998, report["quantization"]
    assert report["quantization"]["activation_tables"]["used"] == "exact"
    assert report["k210_fit"]["kpu_ops"] and report["k210_fit"]["fits_heap"]
    m = manifest_mod.load(str(out / "manifest.json"))
    assert m["kmodel"]["version"] == 4 and m["firmware"] == "maixpy-v4"
    assert m["kmodel"]["ncc"] == ncc.identity(NCC)
    assert m["kmodel"]["activation_tables"] == "exact"
    assert "K210 fit (maixpy-v4)" in proc.stdout


@pytest.mark.slow
def test_example_end_to_end_on_a_maixpy_v4_board(tmp_path):
    """make kmodel FIRMWARE=maixpy-v4 && make flash PORT=virtual BOARD_PROFILE=maixpy-v4 &&
    make eval: the board (legacy KPU API, V4 run by ncc's runtime) against TensorFlow, at
    serial_eval's default thresholds (F1 0.98, mean cos 0.999). With ncc v0.2's own activation
    tables the example measured cos 0.9987, F1 0.963 here; the exact tables (host/ncc_act.py)
    are what bring V4 to V5's level."""
    build, state = tmp_path / "build", tmp_path / "vboard"
    proc = subprocess.run(["make", "-s", "-o", ".venv/.installed", "kmodel",
                           "FIRMWARE=maixpy-v4", "BUILD=%s" % build], cwd=REPO, env=tool_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = str(build / "manifest.json")
    # the 320x224 example does not fit MaixPy-v1's GC heap in serve mode: the Makefile builds
    # it at 224x160 for this firmware, and the fit line says it serves
    assert json.loads((build / "manifest.json").read_text())["input"]["width"] == 224
    assert "GC heap: serve loop" in proc.stdout and "left for your scripts" in proc.stdout
    assert "DOES NOT FIT" not in proc.stdout
    proc = run_tool("host/flash.py", "--port", "virtual", "--vboard-state", state,
                    "--vboard-profile", "maixpy-v4", "--manifest", manifest, "--no-progress",
                    timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # 30 of the 80 held-out images (docs/maixpy-v4.md quotes all 80: make eval)
    proc = run_tool("host/serial_eval.py", "--port", "virtual", "--vboard-state", state,
                    "--manifest", manifest, "--out", tmp_path / "eval", "--no-progress",
                    "--limit", "30", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "maixpy-v4, KPU API maixpy-kpu, kmodel V4 loaded" in proc.stdout
    assert "PASS: " in proc.stdout, proc.stdout[-1500:]
    summary = json.loads((tmp_path / "eval" / "report.json").read_text())["summary"]
    assert summary["compared"] == summary["images"] and summary["input_crc"]["differ"] == 0
