"""`python host/flash.py` (make flash) against real virtual boards: their own processes, real
ptys, the real kflash 1.1.6 (as a library and through its CLI) talking to the virtual boot
ROM + flash stub, the raw REPL of the virtual MicroPython 1.11, then serial_eval on what was
flashed. The kmodel comes from host/convert.py on the seed model."""
import binascii
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest
import serial

from conftest import REPO, assert_one_line_error, run_tool, tool_env
from host import deploy, devconfig, kfpkg
from host.vboard import isp as visp
from host.vboard import launcher, modem
from host.vboard.launcher import start_board

EVAL_DIR = os.path.join(REPO, "examples", "face", "eval")
DEVICE = os.path.join(REPO, "device")
MODEL_AT = 0x300000

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def seed(seed_manifest):
    return seed_manifest


def _flash(manifest, *args, timeout=240):
    return run_tool("host/flash.py", "--manifest", manifest.path, "--no-progress", *args,
                    timeout=timeout)


def _chip(state):
    with open(os.path.join(str(state), "flash.bin"), "rb") as f:
        return f.read()


def _sessions(state):
    with open(os.path.join(str(state), "isp.json")) as f:
        return json.load(f)["sessions"]


def _report(manifest):
    with open(os.path.join(manifest.directory, "flash_report.json")) as f:
        return json.load(f)


def _device_files(manifest, **config):
    files = {}
    for name in sorted(os.listdir(DEVICE)):
        if name.endswith(".py") and name not in deploy.HOST_ONLY_DEVICE_FILES:
            with open(os.path.join(DEVICE, name), "rb") as f:
                files[name] = f.read()
    files["config.json"] = devconfig.to_json(
        devconfig.device_config(manifest, **config)).encode()
    return files


def _board_files(state):
    d = os.path.join(str(state), "flash")
    out = {}
    for name in os.listdir(d):
        with open(os.path.join(d, name), "rb") as f:
            out[name] = f.read()
    return out


# ------------------------------------------------------------------ fast: no board
def test_flash_list_is_what_kflash_parses(tmp_path):
    entries = [kfpkg.Entry("maixpy.bin", 0, b"\x01" * 5000, firmware=True),
               kfpkg.Entry("model.kmodel", MODEL_AT, b"\x02" * 7000)]
    text = kfpkg.flash_list(entries)
    # kflash 1.1.6 rewrites `"address": (.*),` before json.loads: bare decimals on their line
    assert kfpkg.parse_like_kflash(text) == [(0, "maixpy.bin", True),
                                             (MODEL_AT, "model.kmodel", False)]
    assert '"address": 3145728,\n' in text
    pkg = kfpkg.build(str(tmp_path / "x.kfpkg"), entries)
    import zipfile
    with zipfile.ZipFile(pkg) as zf:
        assert sorted(zf.namelist()) == ["flash-list.json", "maixpy.bin", "model.kmodel"]
        assert zf.read("flash-list.json").decode() == text
    # what kflash writes for a firmware: flag (DIO) | u32 len | payload | sha256(before)
    image = entries[0].image()
    body = b"\x02" + struct.pack("<I", 5000) + b"\x01" * 5000
    assert image == body + hashlib.sha256(body).digest()


@pytest.mark.parametrize("entries, fragment", [
    ([kfpkg.Entry("m", 0x300800, b"x")], "not 4 KiB aligned"),
    ([kfpkg.Entry("fw", 0, b"x" * 0x300000, True), kfpkg.Entry("m", MODEL_AT, b"x")],
     "overlaps"),
    ([kfpkg.Entry("m", 0xFFF000, b"x" * 8192)], "beyond the 16 MiB"),
])
def test_kfpkg_refuses_what_the_chip_cannot_take(entries, fragment):
    from host.errors import UserError
    with pytest.raises(UserError) as err:
        kfpkg.check(entries)
    assert fragment in str(err.value)


def test_the_flash_tool_never_loads_tensorflow_or_nncase():
    code = ("import sys; import host.deploy, host.flash, kflash; "
            "from host.vboard import launcher, modem; "
            "print(sorted(m for m in ('tensorflow', 'nncase') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=tool_env(),
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    assert out.strip() == "[]"


def test_the_lines_patch_leaves_other_ports_alone(lines_patch):
    """On a pty no virtual board serves, setting DTR fails exactly as without the patch."""
    master, slave = os.openpty()
    try:
        with serial.Serial(os.ttyname(slave), 115200) as ser:
            with pytest.raises((OSError, serial.SerialException)):
                ser.dtr = False
    finally:
        os.close(master)
        os.close(slave)


def test_the_virtual_rom_knows_kflash_s_own_stub():
    stub = visp.kflash_stub()
    assert stub is not None and len(stub) == 16512     # flashing.md: 16,512 bytes


# Bad input (ports, manifests, addresses, silent boards, firmware that cannot load the
# kmodel): tests/test_bad_inputs.py


def test_make_flash_passes_its_variables():
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed", "flash",
                          "PORT=/dev/ttyUSB0", "BOARD=kd233", "BAUD=115200",
                          "ADDRESS=0x400000", "METHOD=repl", "FIRMWARE=fw.bin"],
                         cwd=REPO, stdout=subprocess.PIPE, universal_newlines=True).stdout
    cmd = " ".join(out.replace("\\\n", " ").split())
    assert ("host/flash.py --port /dev/ttyUSB0 --board kd233 --baud 115200 --method repl "
            "--manifest build/manifest.json --address 0x400000 --firmware fw.bin") in cmd


# ------------------------------------------------------------------ the virtual ISP directly
class IspClient(object):
    """Just enough of kflash's side to poke the fake ROM/stub with bad frames."""

    def __init__(self, ser):
        self.ser = ser

    def send(self, op, addr=0, data=b"", crc=None, raw=None):
        body = raw if raw is not None else struct.pack("<II", addr, len(data)) + data
        if crc is None:
            crc = binascii.crc32(body) & 0xFFFFFFFF
        frame = struct.pack("<HHI", op, 0, crc) + body
        self.ser.write(b"\xc0" + frame.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
                       + b"\xc0")

    def fixed(self, op):
        self.ser.write(b"\xc0" + bytes([op]) + b"\x00" * 12 + b"\xc0")

    def reply(self, timeout=10.0):
        data = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end and data.count(b"\xc0") < 2:
            data += self.ser.read(1)
        return data.split(b"\xc0")[1] if data.count(b"\xc0") >= 2 else None


@pytest.fixture
def lines_patch():
    modem.install()
    yield
    modem.uninstall()


def _log_count(handle, text):
    with open(handle.log) as f:
        return f.read().count(text)


def _reset_into_isp(ser, board, handle, expect_isp=True):
    """kflash's reset_to_isp_<board> sequence on the patched port (its pulse widths); then
    wait (bounded) until the board has acted on it: its ISP reads the line, or (a sequence
    that ends with RESET held) the CPU is held, so that what is sent next meets that state."""
    said = "ISP mode" if expect_isp else "RESET asserted"
    before = _log_count(handle, said)
    ser.dtr, ser.rts = False, False
    time.sleep(0.05)
    if board == "dan":
        ser.dtr, ser.rts = False, True
        time.sleep(0.05)
        ser.rts, ser.dtr = False, True
    else:
        ser.dtr, ser.rts = True, False
        time.sleep(0.05)
        ser.rts, ser.dtr = True, False
    deadline = time.monotonic() + 20
    while _log_count(handle, said) == before:
        assert time.monotonic() < deadline, "the board never said %r" % said
        time.sleep(0.02)
    ser.reset_input_buffer()


def test_virtual_isp_checks_wiring_stub_and_frames(tmp_path, lines_patch):
    with start_board(str(tmp_path / "vb"), log_rate=0, board="dan") as board:
        chip = _chip(tmp_path / "vb")
        ser = serial.Serial(board.port, 115200, timeout=0.05)
        isp = IspClient(ser)
        # kd233's sequence does not reset a dan board into ISP: the greeting goes unanswered
        _reset_into_isp(ser, "kd233", board, expect_isp=False)
        isp.fixed(0xC2)
        assert isp.reply(0.6) is None
        # dan's does
        _reset_into_isp(ser, "dan", board)
        isp.fixed(0xC2)
        assert isp.reply() == b"\xc2\xe0"
        isp.send(0xC3, 0x80000000, b"\x00" * 64, crc=1)
        assert isp.reply() == b"\xc3\xe2", "checksum checked on every computed frame"
        isp.send(0xC3, 0x80000000, raw=struct.pack("<II", 0x80000000, 99) + b"\x00" * 10)
        assert isp.reply() == b"\xc3\xe1", "length field checked"
        # a stub that is not kflash's: the CPU runs it and nothing answers
        isp.send(0xC3, 0x80000000, b"\x13" * 1024)
        assert isp.reply() == b"\xc3\xe0"
        isp.send(0xC5, 0x80000000)
        time.sleep(0.05)
        isp.fixed(0xD2)
        assert isp.reply(0.6) is None
        # kflash's own stub, in 1 KiB frames as kflash sends it
        _reset_into_isp(ser, "dan", board)
        stub = visp.kflash_stub()
        for off in range(0, len(stub), 1024):
            isp.send(0xC3, 0x80000000 + off, stub[off:off + 1024])
            assert isp.reply() == b"\xc3\xe0"
        isp.send(0xC5, 0x80000000)        # frames after it reach the stub, in order
        isp.fixed(0xD2)
        assert isp.reply() == b"\xd2\xe0"
        isp.send(0xD4, MODEL_AT, b"\x55" * 4096)
        assert isp.reply() == b"\xd4\xe4", "D7 (flash init) must come before D4"
        isp.send(0xD7, 1)
        assert isp.reply() == b"\xd7\xe0"
        isp.send(0xD4, MODEL_AT + 512, b"\x55" * 4096)
        assert isp.reply() == b"\xd4\xe6", "4 KiB alignment"
        isp.send(0xD4, 0xFFF000, b"\x55" * 8192)
        assert isp.reply() == b"\xd4\xe6", "within the 16 MiB chip"
        isp.send(0xD4, MODEL_AT, b"\x55" * 4096, crc=7)
        assert isp.reply() == b"\xd4\xe2"
        assert _chip(tmp_path / "vb") == chip, "nothing refused reached the flash"
        isp.send(0xD4, MODEL_AT, b"\xc0\xdb" * 2048)          # SLIP escapes on the way in
        assert isp.reply() == b"\xd4\xe0"
        isp.fixed(0xD5)
        assert isp.reply() == b"\xd5\xe0"
        ser.close()
        assert _chip(tmp_path / "vb")[MODEL_AT:MODEL_AT + 4096] == b"\xc0\xdb" * 2048
    stubs = [s["stub"] for s in _sessions(tmp_path / "vb")]
    assert stubs == [False, True]


@pytest.mark.slow
@pytest.mark.parametrize("board, baud", [("dan", 1500000), ("kd233", 115200)])
def test_kflash_cli_wiring(tmp_path, board, baud):
    """The unmodified kflash CLI (-B board, -b baud) resets the virtual board into ISP through
    DTR/RTS (sitecustomize in host/vboard/site) and writes a .kfpkg."""
    data = os.urandom(20000)
    pkg = kfpkg.build(str(tmp_path / "p.kfpkg"), [kfpkg.Entry("blob.bin", 0x500000, data)])
    state = tmp_path / "vb"
    env = tool_env()
    env["PYTHONPATH"] = os.path.join(REPO, "host", "vboard", "site")
    with start_board(str(state), log_rate=0, board=board) as handle:
        proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "kflash"),
                               "-p", handle.port, "-B", board, "-b", str(baud), "-n", pkg],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert _chip(state)[0x500000:0x500000 + len(data)] == data
    (session,) = _sessions(state)
    assert session["stub"] and session["rebooted"] and session["writes"] == [[0x500000, 20000]]
    assert session["bauds"][-1] == baud


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def flashed(seed, tmp_path_factory):
    """`make flash PORT=virtual` with a firmware: state dir, firmware bytes, the process."""
    d = tmp_path_factory.mktemp("flashed")
    firmware = os.urandom(70000)
    with open(str(d / "fw.bin"), "wb") as f:
        f.write(firmware)
    proc = _flash(seed, "--port", "virtual", "--vboard-state", d / "vb", "--firmware",
                  d / "fw.bin", "--serve-baud", "921600")
    return d / "vb", firmware, proc


@pytest.mark.slow
def test_flash_virtual_writes_verifies_and_eval_runs_what_was_flashed(seed, flashed, tmp_path):
    state, firmware, proc = flashed
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    chip = _chip(state)
    kmodel = seed.kmodel_bytes()
    assert chip[MODEL_AT:MODEL_AT + len(kmodel)] == kmodel
    image = kfpkg.Entry("fw.bin", 0, firmware, firmware=True).image()
    assert chip[:len(image)] == image
    assert _board_files(state) == _device_files(seed, baud=921600)
    out = proc.stdout
    assert "Verified on the board:" in out and "protocol HELLO" in out
    assert "model.kmodel at 0x300000           crc32 %08x ok" % (
        binascii.crc32(kmodel) & 0xFFFFFFFF) in out
    report = _report(seed)
    assert report["kflash"]["passes"] == 1 and report["kflash"]["baud"] == 1500000
    assert report["board_info"]["profile"] == "canmv-v5"
    assert {c["what"] for c in report["checks"]} >= {"fw.bin at 0x0", "protocol HELLO"}
    assert report["repl_upload"]["bytes"] == sum(len(v) for v in _board_files(state).values())
    assert launcher.flashed(str(state))["complete"] is True
    (session,) = _sessions(state)
    assert session["stub"] and session["board"] == "dan" and session["bauds"][-1] == 1500000

    # serial_eval on the same virtual board runs what was flashed (config.json at 921600 baud
    # instead of eval's 1500000: provisioning would have rewritten it)
    images = tmp_path / "imgs"
    images.mkdir()
    for name in ("008.jpg", "009.jpg", "010.jpg"):
        shutil.copy(os.path.join(EVAL_DIR, name), str(images / name))
    ev = run_tool("host/serial_eval.py", "--port", "virtual", "--vboard-state", state,
                  "--manifest", seed.path, "--images", images, "--out", tmp_path / "eval",
                  "--no-progress", timeout=300)
    assert ev.returncode == 0, ev.stdout[-3000:] + ev.stderr[-3000:]
    with open(str(tmp_path / "eval" / "report.json")) as f:
        ev_report = json.load(f)
    assert ev_report["boards"][0]["provisioned"] == ""
    assert "921600 baud" in ev.stdout
    assert _board_files(state) == _device_files(seed, baud=921600)


@pytest.mark.slow
def test_kd233_at_115200_and_injected_checksum_errors(seed, tmp_path):
    """kflash as a library for a kd233 at 115200; then a dan at 1.5 Mbaud whose ISP stub
    answers 1 % of its write frames (64 KiB each) with a checksum error (seed 6: the 5th of
    the firmware's 16 frames): kflash 1.1.6 would skip that chunk; the flash tool writes it
    again and the flash is byte-exact."""
    state = tmp_path / "vb"
    launcher.provision(str(state), files=_device_files(seed))       # scripts already there
    proc = _flash(seed, "--port", "virtual", "--vboard-state", state, "--board", "kd233",
                  "--baud", "115200")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    kmodel = seed.kmodel_bytes()
    assert _chip(state)[MODEL_AT:MODEL_AT + len(kmodel)] == kmodel
    (session,) = _sessions(state)
    assert session["board"] == "kd233" and session["bauds"] == [115200, 115200, 115200]

    # the same model again: the board's flash CRC says nothing needs writing
    proc = _flash(seed, "--port", "virtual", "--vboard-state", state, "--board", "kd233")
    assert proc.returncode == 0 and "nothing to write" in proc.stdout
    assert len(_sessions(state)) == 1

    firmware = os.urandom(1000000)
    with open(str(tmp_path / "fw.bin"), "wb") as f:
        f.write(firmware)
    proc = _flash(seed, "--port", "virtual", "--vboard-state", state, "--board", "dan",
                  "--firmware", tmp_path / "fw.bin", "--vboard-isp-crc-errors", "0.01",
                  "--vboard-seed", "6")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sessions = _sessions(state)[1:]
    injected = sum(s["crc_errors_injected"] for s in sessions)
    assert injected >= 1, "the seed must inject at least one error"
    report = _report(seed)
    assert report["kflash"]["checksum_errors"] == injected
    assert report["kflash"]["passes"] == len(sessions) >= 2
    assert "writing 0x" in proc.stdout and "again" in proc.stdout
    chip = _chip(state)
    image = kfpkg.Entry("fw.bin", 0, firmware, firmware=True).image()
    assert chip[:len(image)] == image
    assert chip[MODEL_AT:MODEL_AT + len(kmodel)] == kmodel


@pytest.mark.slow
def test_method_repl_puts_the_model_in_a_file(tiny_build, tmp_path):
    """METHOD=repl: no ISP; the model is a verified file and the board loads it from there."""
    model = tiny_build
    state = tmp_path / "vb"
    launcher.provision(str(state), files=_device_files(model))
    proc = _flash(model, "--port", "virtual", "--vboard-state", state, "--method", "repl")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = _board_files(state)
    assert files["model.kmodel"] == model.kmodel_bytes()
    assert json.loads(files["config.json"].decode())["model"] == {
        "source": "file", "path": "/flash/model.kmodel", "size": model["kmodel"]["size"],
        "sha256": model["kmodel"]["sha256"], "version": 5}
    assert set(_chip(state)[MODEL_AT:MODEL_AT + 4096]) == {0xFF}, "the flash chip untouched"
    assert not os.path.exists(str(state / "isp.json"))
    assert "loaded from file" in proc.stdout
    up = _report(model)["repl_upload"]
    assert up["bytes"] >= model["kmodel"]["size"]
    assert up["bytes"] / up["seconds"] < 11520, "bytes/s over the 115200-baud line rate"


@pytest.mark.slow
def test_wrong_board_type_is_a_one_line_kflash_error(seed, tmp_path):
    """kflash's dan reset sequence cannot put a kd233-wired board into ISP mode: kflash's
    bare Exception after its bounded retries becomes one line naming --board."""
    state = tmp_path / "vb"
    with start_board(str(state), log_rate=0, board="kd233") as board:
        before = _chip(state)
        t0 = time.monotonic()
        proc = _flash(seed, "--port", board.port, "--board", "dan")   # a vboard pty by path
        took = time.monotonic() - t0
    assert_one_line_error(proc, "kflash could not flash", "did not enter its ISP mode",
                          "--board")
    assert took < 40
    assert _chip(state) == before and not os.path.exists(str(state / "isp.json"))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["board_killed", "port_unplugged"])
def test_interrupted_upload_keeps_the_old_script_and_a_rerun_completes(seed, flashed, tmp_path,
                                                                         how):
    """The board dies (SIGKILL) or its port vanishes (the USB cable pulled: the virtual
    board's SIGUSR2 closes its pty for 300 ms) in the middle of uploading detect.py."""
    state = tmp_path / "vb"
    shutil.copytree(str(flashed[0]), str(state))
    old = b"# an older detect.py\nOLD = True\n" * 50
    with open(str(state / "flash" / "detect.py"), "wb") as f:
        f.write(old)
    cmd = [sys.executable, os.path.join(REPO, "host", "flash.py"), "--manifest", seed.path,
           "--port", "virtual", "--vboard-state", str(state), "--no-progress",
           "--serve-baud", "921600"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=tool_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    part = state / "flash" / "detect.py.part"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if part.exists() and part.stat().st_size > 4000:
            break
        time.sleep(0.01)
    assert part.exists(), "the upload of detect.py never started"
    with open(str(state / "port.json")) as f:
        os.kill(json.load(f)["pid"], signal.SIGKILL if how == "board_killed" else signal.SIGUSR2)
    out, err = proc.communicate(timeout=60)
    proc.returncode = proc.returncode
    assert proc.returncode == 2, out[-2000:] + err[-2000:]
    assert "Traceback" not in err
    errors = [l for l in err.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and "detect.py" in errors[0], err
    with open(str(state / "flash" / "detect.py"), "rb") as f:
        assert f.read() == old, "the old script is intact"
    rerun = _flash(seed, "--port", "virtual", "--vboard-state", state, "--serve-baud", "921600")
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    files = _board_files(state)
    files.pop("detect.py.part", None)
    assert files == _device_files(seed, baud=921600)
    assert "nothing to write" in rerun.stdout
