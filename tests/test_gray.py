"""Grayscale (1-channel) models end to end, as users run the tools: a tiny 32x32x1 model
(tests/gray_model.py) converted by host/convert.py (real TensorFlow, nncase 1.9 or ncc v0.2),
flashed to the virtual board by host/flash.py and evaluated by host/serial_eval.py with gray8
payloads: the board's GRAYSCALE image, its pix_to_ai() and the KPU against TensorFlow on the
host's luminance of the same pictures. And the refusals: other channel counts at convert time,
payloads that do not fit the model's input."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, assert_nothing_written, assert_one_line_error, run_tool, tool_env
import gray_model
from host import manifest as manifest_mod, ncc


def _pb(directory, channels):
    path = os.path.join(str(directory), "gray%d.pb" % channels)
    subprocess.run([sys.executable, os.path.join(REPO, "tests", "gray_model.py"), path,
                    str(channels)], cwd=REPO, env=tool_env(), check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    return path


def _convert(pb, calib, out, *more):
    return run_tool("host/convert.py", "--frozen-pb", pb, "--input-size", "%dx%d" % (gray_model.H, gray_model.W),
                    "--output-node", gray_model.OUTPUT, "--decoder", "raw", "--calib-dir",
                    calib, "--out", out, *more)


@pytest.fixture(scope="module")
def gray_dirs(tmp_path_factory):
    d = tmp_path_factory.mktemp("gray")
    return {"dir": d, "pb": _pb(d, 1), "calib": gray_model.images(d / "calib", 16, seed=11),
            "eval": gray_model.images(d / "eval", 6, seed=12)}


@pytest.fixture(scope="module")
def gray_build(gray_dirs):
    out = gray_dirs["dir"] / "build"
    proc = _convert(gray_dirs["pb"], gray_dirs["calib"], out)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return manifest_mod.load(str(out / "manifest.json")), proc


def test_gray_model_converts_to_a_gray_manifest(gray_build):
    manifest, proc = gray_build
    inp = manifest["input"]
    assert (inp["channels"], inp["format"], inp["mean"], inp["std"]) == (1, "gray", [0.0], [1.0])
    with open(os.path.join(manifest.directory, "convert_report.json")) as f:
        report = json.load(f)
    # nncase compiled a 1-channel uint8 input and its simulator agrees with TensorFlow on the
    # held-out images' luminance
    assert report["quantization"]["mean_cos"] >= 0.999
    assert report["quantization"]["holdout_images"] == 4
    fit = report["k210_fit"]
    assert fit["serve_gc_rgb565z_bytes"] is None and fit["jpeg_max_bytes"] == 0
    assert "serve loop peak, gray8" in open(os.path.join(manifest.directory,
                                                         "convert_report.html")).read()


def _eval(manifest, images, out, *args):
    return run_tool("host/serial_eval.py", "--manifest", manifest.path, "--images", images,
                    "--out", out, "--no-progress", *args, timeout=600)


def _gray_report(out, n):
    with open(os.path.join(str(out), "report.json")) as f:
        report = json.load(f)
    s = report["summary"]
    assert s["compared"] == n and s["failed"] == 0
    assert s["input_crc"]["equal"] == n and s["pixel_crc"]["equal"] == n
    assert s["mean_cos"] >= 0.999
    board = report["boards"][0]
    assert board["payload"] == "gray8" and board["info"]["formats"] == ["gray8"]
    assert "gray8" in board["info"]["features"]
    assert report["verdict"]["ok"]
    return report


@pytest.mark.slow
def test_gray_model_flashed_and_evaluated_on_the_virtual_board(gray_build, gray_dirs, tmp_path):
    manifest, _ = gray_build
    state = tmp_path / "vb"
    proc = run_tool("host/flash.py", "--port", "virtual", "--manifest", manifest.path,
                    "--vboard-state", state, "--no-progress", timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for payload in ("gray8", "auto"):
        out = tmp_path / payload
        proc = _eval(manifest, gray_dirs["eval"], out, "--vboard-state", state,
                     "--payload", payload)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        report = _gray_report(out, 6)
        assert not report["boards"][0]["provisioned"]    # flash.py wrote the board
        # the pixel CRC covers the bytes sent: gray8's, with --payload auto too
        assert "; gray8 bytes: 6 equal, 0 differ" in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isfile(ncc.VENV_NCC), reason="no .venv/bin/ncc: run `make ncc`")
def test_gray_model_through_ncc_on_maixpy_v4(gray_dirs, tmp_path):
    """--firmware maixpy-v4: ncc v0.2 gets the calibration images as gray PNGs (its
    1-channel input takes OpenCV's first channel) and `ncc infer` the w*h bytes."""
    out = tmp_path / "build"
    proc = _convert(gray_dirs["pb"], gray_dirs["calib"], out, "--firmware", "maixpy-v4")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    manifest = manifest_mod.load(str(out / "manifest.json"))
    assert manifest["kmodel"]["version"] == 4 and manifest["input"]["channels"] == 1
    with open(str(out / "convert_report.json")) as f:
        assert json.load(f)["quantization"]["mean_cos"] >= 0.999
    proc = _eval(manifest, gray_dirs["eval"], tmp_path / "eval", "--vboard-state",
                 tmp_path / "vb", "--limit", "3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _gray_report(tmp_path / "eval", 3)


@pytest.mark.parametrize("channels", [2, 4])
def test_other_channel_counts_are_refused_at_convert_time(gray_dirs, tmp_path, channels):
    pb = _pb(tmp_path, channels)
    out = tmp_path / "build"
    proc = _convert(pb, gray_dirs["calib"], out)
    assert_one_line_error(proc, "input image has shape [1, 32, 32, %d]" % channels,
                          "%d channels" % channels, "RGB (3 channels) or GRAYSCALE (1)")
    assert_nothing_written(out)


def test_three_different_means_for_a_gray_model_are_refused(gray_dirs, tmp_path):
    out = tmp_path / "build"
    proc = _convert(gray_dirs["pb"], gray_dirs["calib"], out, "--input-scale", "mean-std",
                    "--mean", "0.4,0.5,0.6", "--std", "0.2")
    assert_one_line_error(proc, "--mean 0.4,0.5,0.6", "grayscale (1 channel): give one value")
    assert_nothing_written(out)


def test_payloads_that_do_not_fit_the_models_input_are_refused(gray_build, gray_dirs,
                                                               tiny_build, tmp_path):
    manifest, _ = gray_build
    for payload in ("rgb565", "rgb565z", "jpeg"):
        proc = _eval(manifest, gray_dirs["eval"], tmp_path / payload, "--payload", payload)
        assert_one_line_error(proc, "--payload %s" % payload, "grayscale", "gray8 or auto")
        assert_nothing_written(tmp_path / payload)
    proc = _eval(tiny_build, gray_dirs["eval"], tmp_path / "rgb", "--payload", "gray8")
    assert_one_line_error(proc, "--payload gray8 is for grayscale models",
                          "input.channels 3")
    assert_nothing_written(tmp_path / "rgb")


def test_gray8_payload_is_the_boards_luminance_and_its_crcs(tmp_path):
    from device import protocol as P
    from host import eval_inputs, pixels
    path = gray_model.images(tmp_path, 1, seed=4, size=(40, 24)) + "/00000.png"
    img = eval_inputs.prepare(path, 32, 16, "gray8")
    assert img.fmt == P.FMT_GRAY8 and img.resized and len(img.payload) == 32 * 16
    assert img.pixels.shape == (16, 32, 1)
    assert img.payload == pixels.board_gray_pixels(path, 32, 16).tobytes()
    # the KPU input is the bytes themselves (pix_to_ai copies them): both CRCs are theirs
    assert img.input_crc == img.pixel_crc == P.crc32(img.payload)


@pytest.mark.slow
def test_gray_model_live_mode_takes_grayscale_camera_frames(gray_build, gray_dirs, tmp_path):
    """main.py starts live mode with a 1-channel config: the camera is set to GRAYSCALE
    (device/detect.py), the KPU runs on its frames and the LCD shows them (gray: R = G = B)."""
    import serial
    from host import devconfig, transport
    from host.vboard.launcher import start_board
    manifest, _ = gray_build
    state = str(tmp_path / "vb")
    transport.provision_virtual(state, manifest, 1500000)
    cfg = devconfig.device_config(manifest, mode="live", grace_ms=300)
    with open(os.path.join(state, "flash", "config.json"), "w") as f:
        f.write(devconfig.to_json(cfg))
    lcd = os.path.join(state, "lcd")
    with start_board(state, sensor_dir=gray_dirs["eval"], log_rate=0) as board:
        deadline = time.monotonic() + 90
        frames = []
        while len(frames) < 3 and time.monotonic() < deadline:
            frames = sorted(n for n in os.listdir(lcd) if n.endswith(".png")) \
                if os.path.isdir(lcd) else []
            time.sleep(0.2)
        assert len(frames) >= 3, "live mode showed %d frame(s)" % len(frames)
        with serial.Serial(board.port, 115200, timeout=0.2) as ser:
            ser.write(b"\x03")
            seen = b""
            end = time.monotonic() + 15
            while b">>> " not in seen and time.monotonic() < end:
                seen += ser.read(4096)
    assert b"k210-deploy live: Ctrl-C: REPL" in seen, seen[-500:]
    assert b"Traceback" not in seen and b"Error" not in seen, seen[-500:]
    # the LCD keeps its last 50 frames (host/vboard/shims/lcd.py KEEP): the newest three
    frames = sorted(n for n in os.listdir(lcd) if n.endswith(".png"))[-3:]
    shots = [np.asarray(Image.open(os.path.join(lcd, n)).convert("RGB")) for n in frames]
    assert all(s.shape == (32, 32, 3) for s in shots)
    # grayscale frames: every pixel is gray, except the drawn FPS text
    for s in shots:
        gray = (s[..., 0] == s[..., 1]) & (s[..., 1] == s[..., 2])
        assert gray.mean() > 0.5
    assert len(set(s.tobytes() for s in shots)) == 3


def test_device_config_carries_the_channels_and_refuses_others(gray_build):
    from device import detect
    from host import devconfig
    from host.errors import UserError
    manifest, _ = gray_build
    cfg = devconfig.device_config(manifest)
    assert cfg["input"]["channels"] == 1 and detect.check_config(cfg) == []
    bad = json.loads(json.dumps(dict(manifest)))
    bad["input"]["channels"] = 2
    with pytest.raises(UserError, match="input.channels is 2"):
        devconfig.device_config(bad)
