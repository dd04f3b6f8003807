"""`python host/serial_eval.py` as users run it, against real virtual boards (own processes,
real pty or TCP, the repo's unmodified device/ scripts, nncase's simulator as the KPU) and
real TensorFlow on the host. Kmodels are built by host/convert.py first."""
import json
import os
import re
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, assert_one_line_error, run_tool
from rfc2217_server import Rfc2217Server
from device import protocol as P
from host import compare, devconfig, eval_inputs, manifest as manifest_mod, transport
from host.errors import UserError
from host.vboard.launcher import start_board

EXAMPLE = os.path.join(REPO, "examples", "face")
EVAL_DIR = os.path.join(EXAMPLE, "eval")
# Six eval images; the seed model finds faces in 008.jpg and 009.jpg (threshold 0.7), so
# the detection comparison is not vacuous.
SIX = ["006.jpg", "007.jpg", "008.jpg", "009.jpg", "010.jpg", "011.jpg"]


# ------------------------------------------------------------------ fast: no board
def test_parse_ports():
    specs = transport.parse_ports("virtual")
    assert [(s.kind, s.index) for s in specs] == [("virtual", 0)]
    specs = transport.parse_ports("virtual,virtual")
    assert [(s.kind, s.index) for s in specs] == [("virtual", 0), ("virtual", 1)]
    assert [s.index for s in transport.parse_ports("virtual:3")] == [0, 1, 2]
    specs = transport.parse_ports("/dev/ttyUSB0, socket://h:1,virtual")
    assert [(s.kind, s.name) for s in specs] == [("serial", "/dev/ttyUSB0"),
                                                 ("serial", "socket://h:1"),
                                                 ("virtual", "virtual")]
    assert transport.vboard_state_dir("build/vboard", 0) == "build/vboard"
    assert transport.vboard_state_dir("build/vboard", 1) == "build/vboard-2"
    for bad in ("", "a,,b", "/dev/x,/dev/x", "virtual:0", "virtual:99"):
        with pytest.raises(UserError):
            transport.parse_ports(bad)


def test_host_crcs_match_the_protocol_codec(tmp_path):
    """The host's CRC of its pixels is the board's: protocol.planar_crc (the code the board
    runs for crc_source lut) over the RGB565 bytes the host sends."""
    rng = np.random.RandomState(0)
    path = str(tmp_path / "a.png")
    Image.fromarray(rng.randint(0, 256, (24, 40, 3)).astype(np.uint8)).save(path)
    img = eval_inputs.prepare(path, 32, 16, "rgb565")
    assert img.resized and len(img.payload) == 2 * 32 * 16
    assert img.input_crc == P.planar_crc(img.payload, 32, 16)
    assert img.pixel_crc == P.crc32(img.payload)
    jpg = eval_inputs.prepare(path, 32, 16, "jpeg")
    assert jpg.payload.startswith(b"\xff\xd8") and jpg.fmt == P.FMT_JPEG
    assert jpg.pixels.shape == (16, 32, 3)


def _record(f1_pairs=1, crc_equal=True):
    return {"status": "ok", "resized": False, "tensors": [{"cos": 0.9999, "l2r": 0.01,
                                                           "rmse": 0.1, "mae": 0.1,
                                                           "max_abs": 0.2}],
            "matches": [], "detections": {"tp": f1_pairs, "fp": 0, "fn": 1 - f1_pairs,
                                          "unmatched": 1 - f1_pairs, "near_threshold": 0,
                                          "host_boxes": 1, "board_boxes": f1_pairs},
            "crc": {"input_equal": crc_equal, "pixel_equal": True, "source": "pix_ai"},
            "board": {"kpu_ms": 1.0, "prep_ms": 1.0, "decode_ms": 1.0}, "name": "x"}


def test_verdict_separates_model_and_preprocessing_problems():
    s = compare.summarize([_record(), _record()], ["out"])
    assert compare.verdict(s, 0.98, 0.999, "rgb565") == (True, [], [])
    s = compare.summarize([_record(), _record(0)], ["out"])
    ok, reasons, _ = compare.verdict(s, 0.98, 0.999, "rgb565")
    assert not ok and "F1" in reasons[0]
    s = compare.summarize([_record(), _record(crc_equal=False)], ["out"])
    ok, reasons, _ = compare.verdict(s, 0.98, 0.999, "rgb565")
    assert not ok and reasons[0].startswith("preprocessing, not the model")
    ok, reasons, warnings = compare.verdict(s, 0.98, 0.999, "jpeg")
    assert ok and "JPEG decoder" in warnings[0]
    failed = {"status": "board_error", "resized": False, "name": "y",
              "error": {"name": "jpeg", "reason": "JPEG decode failed"}}
    ok, reasons, _ = compare.verdict(compare.summarize([failed], ["out"]), 0.98, 0.999, "jpeg")
    assert not ok and "failed on the board" in reasons[0]


# ------------------------------------------------------------------ builds
@pytest.fixture(scope="module")
def seed(seed_manifest):
    return seed_manifest


def _example_ready():
    config = os.path.join(EXAMPLE, "convert.json")
    ckpt = os.path.join(EXAMPLE, "checkpoint", "checkpoint")
    if not (os.path.isfile(config) and os.path.isfile(ckpt)):
        return "examples/face has no convert.json + trained checkpoint yet"
    try:
        with open(os.path.join(EXAMPLE, "eval_result.json")) as f:
            f1 = json.load(f)["f1"]
    except (OSError, ValueError, KeyError):
        return "examples/face/eval_result.json is missing"
    if f1 < 0.9:
        return ("the example model is not trained yet (examples/face/eval_result.json F1 "
                "%.3f < 0.9)" % f1)
    return None


@pytest.fixture(scope="module")
def example(request):
    why = _example_ready()
    if why:
        pytest.skip(why)
    build, _stdout = request.getfixturevalue("example_build")
    return manifest_mod.load(str(build / "manifest.json"))


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    d = tmp_path_factory.mktemp("six")
    for name in SIX:
        shutil.copy(os.path.join(EVAL_DIR, name), str(d / name))
    return str(d)


def _eval(manifest, images, out, *args, timeout=300):
    return run_tool("host/serial_eval.py", "--manifest", manifest.path, "--images", images,
                    "--out", out, "--no-progress", *args, timeout=timeout)


def _report(out, n, min_boxes=1):
    with open(os.path.join(str(out), "report.json")) as f:
        report = json.load(f)
    s = report["summary"]
    assert s["images"] == n and s["compared"] == n and s["failed"] == 0
    assert s["detections"]["f1"] >= 0.98
    assert s["mean_cos"] >= 0.999
    assert s["input_crc"]["equal"] == n and s["input_crc"]["differ"] == 0
    assert s["pixel_crc"]["equal"] == n
    assert s["detections"]["host_boxes"] >= min_boxes, "the comparison must not be vacuous"
    assert report["verdict"]["ok"]
    overlays = sorted(os.listdir(os.path.join(str(out), "overlays")))
    assert len(overlays) == n and all(o.endswith(".png") for o in overlays)
    with open(os.path.join(str(out), "report.html")) as f:
        page = f.read()
    assert all("overlays/%s" % o in page for o in overlays)
    assert not re.search(r"(src|href)=['\"](https?:)?//", page), "no external assets"
    assert not [x for x in os.listdir(str(out)) if x.startswith(".")], "staging removed"
    return report


# ------------------------------------------------------------------ end to end
@pytest.mark.slow
@pytest.mark.parametrize("model", ["seed", "example"])
def test_virtual_board_end_to_end(request, model, six, tmp_path):
    manifest = request.getfixturevalue(model)
    with open(os.path.join(manifest.directory, "convert_report.json")) as f:
        fit = json.load(f)["k210_fit"]
    if not fit["fits_heap"]:
        pytest.fail("the %s kmodel needs %d bytes of main RAM but firmware %s leaves about %d "
                    "(convert_report.json k210_fit): the board refuses to load it, so eval "
                    "cannot pass; the model must shrink (or the firmware profile's budget be "
                    "revised)" % (model, fit["main_memory_bytes"], manifest["firmware"],
                                  fit["heap_budget_bytes"]))
    images = six if model == "seed" else EVAL_DIR
    limit = [] if model == "seed" else ["--limit", "8"]
    out = tmp_path / "eval"
    proc = _eval(manifest, images, out, "--vboard-state", tmp_path / "vb", "--payload",
                 "rgb565", *limit)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = _report(out, 6 if model == "seed" else 8)
    assert report["boards"][0]["payload"] == "rgb565"
    assert "PASS" in proc.stdout and "Link:" in proc.stdout
    # the board was provisioned from the manifest (no flash step yet) and booted into serve
    scripts = sorted(n for n in os.listdir(os.path.join(REPO, "device")) if n.endswith(".py"))
    assert report["boards"][0]["provisioned"].split("; ")[0] == \
        ", ".join(sorted(scripts + ["config.json"]))
    assert report["boards"][0]["path"] == "boot"
    with open(str(tmp_path / "vb" / "flash" / "config.json")) as f:
        assert json.load(f) == devconfig.device_config(manifest)
    link = report["link"]
    # no speed is asserted here (make bench measures it): the line never beats physics
    assert 0.0 < link["efficiency"] <= 1.0 and link["images_per_second"] > 0
    # a second run finds the board provisioned and writes nothing
    assert transport.provision_plan(str(tmp_path / "vb"), manifest, 1500000)[:2] == ({}, None)


@pytest.mark.slow
def test_socket_url(seed, six, tmp_path):
    state = str(tmp_path / "vb")
    transport.provision_virtual(state, seed, 1500000)
    with start_board(state, tcp_port=0) as board:
        proc = _eval(seed, six, tmp_path / "eval", "--port", board.url, "--limit", "3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = _report(tmp_path / "eval", 3)
    assert report["boards"][0]["port"].startswith("socket://127.0.0.1:")


@pytest.mark.slow
def test_board_on_another_host_over_rfc2217(seed, six, tmp_path):
    """A board behind an RFC 2217 server (as on a Raspberry Pi of a board farm): the baud
    switch to serve mode goes through the protocol; then one run sharded over that remote
    board and a local virtual one."""
    state = str(tmp_path / "remote")
    transport.provision_virtual(state, seed, 1500000)
    with start_board(state, log_rate=0) as board, Rfc2217Server(board.port) as server:
        proc = _eval(seed, six, tmp_path / "eval", "--port", server.url, "--limit", "3")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        report = _report(tmp_path / "eval", 3)
        assert report["boards"][0]["port"] == server.url
        assert report["boards"][0]["link"]["baud"] == 1500000

        out = tmp_path / "sharded"
        proc = _eval(seed, six, out, "--port", "%s,virtual" % server.url,
                     "--vboard-state", tmp_path / "local")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = _report(out, 6)
    assert sorted(b["port"] == server.url for b in report["boards"]) == [False, True]
    assert all(b["link"]["images"] >= 1 for b in report["boards"])
    assert server.clients == 2


@pytest.mark.slow
def test_two_virtual_boards_share_the_images(seed, six, tmp_path):
    out = tmp_path / "eval"
    proc = _eval(seed, six, out, "--port", "virtual,virtual", "--vboard-state", tmp_path / "vb")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = _report(out, 6)
    boards = report["boards"]
    assert len(boards) == 2 and os.path.isdir(str(tmp_path / "vb-2" / "flash"))
    assert all(b["link"]["images"] >= 1 for b in boards)
    assert sum(b["link"]["images"] for b in boards) == 6
    assert len(set(r["board_port"] for r in report["images"])) == 2


@pytest.mark.slow
@pytest.mark.parametrize("model", ["seed", "example"])
def test_rgb565z_by_default_exact_and_smaller(request, model, six, tmp_path):
    """The default payload (auto) on a virtual board, whose INFO lists rgb565z: deflated
    RGB565, every pixel and input CRC equal to the host's, fewer bytes than rgb565."""
    manifest = request.getfixturevalue(model)
    images = six if model == "seed" else EVAL_DIR
    n = 6 if model == "seed" else 8
    out = tmp_path / "eval"
    proc = _eval(manifest, images, out, "--vboard-state", tmp_path / "vb", "--limit", str(n))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = _report(out, n)
    assert report["run"]["payload"] == "auto"
    assert report["boards"][0]["payload"] == "rgb565z"
    assert "rgb565z" in report["boards"][0]["info"]["formats"]
    assert "payload rgb565z" in proc.stdout
    w, h = manifest["input"]["width"], manifest["input"]["height"]
    assert report["link"]["payload_bytes"] < 0.8 * n * 2 * w * h


def test_payload_choice_per_board():
    with_z = {"formats": ["rgb565", "jpeg", "rgb565z"]}
    without = {"formats": ["rgb565", "jpeg"]}
    assert eval_inputs.choose_format("auto", with_z) == (P.FMT_RGB565Z, None)
    assert eval_inputs.choose_format("rgb565z", with_z) == (P.FMT_RGB565Z, None)
    for choice in ("auto", "rgb565z"):       # a board without uzlib is never sent rgb565z
        fmt, note = eval_inputs.choose_format(choice, without)
        assert fmt == P.FMT_RGB565 and "sending rgb565" in note
    assert eval_inputs.choose_format("rgb565", with_z) == (P.FMT_RGB565, None)
    assert eval_inputs.choose_format("jpeg", with_z) == (P.FMT_JPEG, None)
    assert [eval_inputs.pixel_payload(c) for c in eval_inputs.CHOICES if c != "gray8"] == \
        ["rgb565", "rgb565", "rgb565", "jpeg"]
    with pytest.raises(UserError):
        eval_inputs.pixel_payload("png")
    # grayscale models (manifest input.channels 1): gray8 only, and only for them
    assert eval_inputs.pixel_payload("auto", 1) == eval_inputs.pixel_payload("gray8", 1) == "gray8"
    assert eval_inputs.choose_format("auto", {"formats": ["gray8"]}) == (P.FMT_GRAY8, None)
    for choice, channels in (("rgb565", 1), ("jpeg", 1), ("gray8", 3)):
        with pytest.raises(UserError):
            eval_inputs.pixel_payload(choice, channels)


@pytest.mark.slow
def test_jpeg_payload(seed, six, tmp_path):
    out = tmp_path / "eval"
    proc = _eval(seed, six, out, "--payload", "jpeg", "--limit", "3",
                 "--vboard-state", tmp_path / "vb")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = _report(out, 3)
    assert report["run"]["payload"] == "jpeg"
    # the eval images are 320x224, the seed model 320x240: re-encoded JPEGs, far smaller
    # than raw RGB565
    assert all(r["resized"] for r in report["images"])
    assert report["link"]["payload_bytes"] < 3 * 2 * 320 * 240 / 3


@pytest.mark.slow
def test_fidelity_below_thresholds_exits_1_with_the_report(seed, six, tmp_path):
    out = tmp_path / "eval"
    proc = _eval(seed, six, out, "--limit", "1", "--min-cos", "0.9999999",
                 "--vboard-state", tmp_path / "vb")
    assert_one_line_error(proc, "fidelity below thresholds", "mean output cos", code=1)
    with open(str(out / "report.json")) as f:
        report = json.load(f)
    assert not report["verdict"]["ok"] and "FAIL" in proc.stdout
    assert os.path.isfile(str(out / "report.html"))


@pytest.mark.slow
def test_board_in_live_mode_is_switched_to_serve_mode(seed, six, tmp_path):
    """A board running live mode (camera loop, Ctrl-C enabled) on an explicit port: the host
    interrupts it and starts serve mode from the REPL."""
    state = str(tmp_path / "vb")
    transport.provision_virtual(state, seed, 1500000)
    cfg = devconfig.device_config(seed, mode="live", grace_ms=300)
    with open(os.path.join(state, "flash", "config.json"), "w") as f:
        f.write(devconfig.to_json(cfg))
    with start_board(state, sensor_dir=six) as board:
        lcd = os.path.join(state, "lcd")
        deadline = time.monotonic() + 90      # live mode runs once it shows camera frames
        while not (os.path.isdir(lcd) and len(os.listdir(lcd)) >= 2):
            assert time.monotonic() < deadline, "live mode never showed a frame"
            time.sleep(0.1)
        proc = _eval(seed, six, tmp_path / "eval", "--port", board.port, "--limit", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = _report(tmp_path / "eval", 2, min_boxes=0)
    assert report["boards"][0]["path"] == "repl"


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["reset", "disconnect"])
def test_board_reset_or_port_unplugged_mid_run_all_images_complete(seed, six, tmp_path, fault):
    """The 60th frame on the line is cut short by a board reset (banner, boot, serve mode
    again) or by the port vanishing for 300 ms: frame 60 (both directions counted: ~75 per
    320x240 rgb565z image with its ACKs) is inside the first images' transfer. The run
    re-establishes the session and completes with every image verified."""
    out = tmp_path / "eval"
    proc = _eval(seed, six, out, "--vboard-state", tmp_path / "vb",
                 "--vboard-faults", "%s@60" % fault)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = _report(out, 6)
    board = report["boards"][0]
    assert board["faults"]["faults"][fault] == 1
    assert board["faults"]["events"][0][:1] == [60]
    recovery = board["recovery"]
    assert recovery["sessions_reestablished"] >= 1 and recovery["resent_images"] >= 1, \
        (recovery, board["faults"], board["logs"], proc.stdout[-2000:])
    if fault == "reset":
        assert recovery["board_restarts"] >= 1
    else:
        assert recovery["port_reopens"] >= 1
    assert recovery["failed_images"] == 0


# Bad input (ports, manifests, image folders, silent boards, firmware that cannot load the
# kmodel, a board running another model): tests/test_bad_inputs.py


# ------------------------------------------------------------------ live mode
@pytest.mark.slow
def test_live_mode_camera_to_lcd(seed, six, tmp_path):
    """main.py starts live mode: the sensor shim plays the image folder, the KPU runs, boxes
    and the FPS are drawn, the LCD shim writes each frame as a PNG; Ctrl-C stops it (seen by
    the live loop, not the firmware, whose Ctrl-C would free the KPU buffers on CanMV)."""
    state = str(tmp_path / "vb")
    transport.provision_virtual(state, seed, 1500000)
    cfg = devconfig.device_config(seed, mode="live", grace_ms=300)
    with open(os.path.join(state, "flash", "config.json"), "w") as f:
        f.write(devconfig.to_json(cfg))
    lcd = os.path.join(state, "lcd")
    with start_board(state, sensor_dir=six, log_rate=0) as board:
        deadline = time.monotonic() + 90
        frames = []
        while time.monotonic() < deadline:
            frames = sorted(n for n in os.listdir(lcd) if n.endswith(".png")) \
                if os.path.isdir(lcd) else []
            if len(frames) >= 4:
                break
            time.sleep(0.2)
        assert len(frames) >= 4, "live mode showed %d frame(s)" % len(frames)
        import serial
        with serial.Serial(board.port, 115200, timeout=0.2) as ser:
            ser.write(b"\x03")    # live mode watches for Ctrl-C itself (device/detect.py)
            seen = b""
            end = time.monotonic() + 15
            while b">>> " not in seen and time.monotonic() < end:
                seen += ser.read(4096)
        assert b"k210-deploy live: Ctrl-C: REPL" in seen and b">>> " in seen
    shots = [np.asarray(Image.open(os.path.join(lcd, n)).convert("RGB")) for n in frames[:4]]
    assert all(s.shape == (240, 320, 3) for s in shots)
    # frames follow the folder (006, 007, 008, 009): all different
    assert len(set(s.tobytes() for s in shots)) == 4
    # the FPS text (pure green) on every frame; red face boxes where the model sees faces
    assert all(((s == (0, 255, 0)).all(axis=-1)).sum() > 10 for s in shots)
    assert sum(((s == (255, 0, 0)).all(axis=-1)).sum() > 50 for s in shots[2:4]) >= 1
