"""Start and stop a virtual board from a host process (tests, `--port virtual`).

Never imports nncase or the board itself: the board runs in its own process
(`python -m host.vboard`), so a host that imports TensorFlow can use it.
"""
import json
import os
import signal
import subprocess
import sys
import time

from host import atomic, lifeline
from host.vboard import fs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_STATE = os.path.join("build", "vboard")


class BoardHandle:
    """A running virtual board: `.port` (pty path at start), `.link` (DIR/tty: a stable name
    that follows the pty when the fault layer unplugs it), `.url` (socket://... or None),
    `.pid`, `.state_dir`, `.log` (its stderr file); `.stop()`, `.unplug()` (the port vanishes
    for the spec's disconnect_ms), `.faults()` (DIR/faults.json); a context manager."""

    def __init__(self, proc, status, log_path, line):
        self.proc = proc
        self.lifeline = line
        self.port = status["port"]
        self.url = status["url"]
        self.pid = status["pid"]
        self.profile = status["profile"]
        self.state_dir = status["state"]
        self.board = status.get("board", "dan")
        self.link = status.get("link") or self.port
        self.log = log_path

    def unplug(self):
        """Pull the virtual USB cable: the pty disappears and comes back (SIGUSR2)."""
        os.kill(self.pid, signal.SIGUSR2)

    def faults(self):
        """The fault layer's counts (DIR/faults.json), or None without a fault spec."""
        try:
            with open(os.path.join(self.state_dir, "faults.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=5.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.lifeline.cut()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_board(state_dir=DEFAULT_STATE, profile="canmv-v5", tcp_port=None, sensor_dir=None,
                log_rate=0.05, seed=0, link=None, env=None, timeout=30.0, board="dan",
                isp_crc_errors=0.0, faults="", fault_seed=None):
    """Spawn `python -m host.vboard` and wait until its pty is ready. `profile`: a
    host.firmware profile name, or a dict in that format (a custom firmware build);
    `board`: kflash's board type, i.e. how DTR/RTS reset it (host.vboard.modem.WIRING);
    `isp_crc_errors`: fraction of ISP flash writes answered with a checksum error;
    `faults`: a fault spec for the line (host/vboard/faults.py), `fault_seed` its seed."""
    state_dir = os.path.abspath(state_dir)
    os.makedirs(state_dir, exist_ok=True)
    status_path = os.path.join(state_dir, "port.json")
    if os.path.exists(status_path):
        os.remove(status_path)
    cmd = [sys.executable, "-m", "host.vboard", "--state", state_dir,
           "--log-rate", str(log_rate), "--seed", str(seed), "--board", board]
    if isp_crc_errors:
        cmd += ["--isp-crc-errors", str(isp_crc_errors)]
    if faults:
        cmd += ["--faults", faults]
    if fault_seed is not None:
        cmd += ["--fault-seed", str(fault_seed)]
    for stale in ("faults.json",):
        if os.path.exists(os.path.join(state_dir, stale)):
            os.remove(os.path.join(state_dir, stale))
    if isinstance(profile, dict):
        profile_path = os.path.join(state_dir, "profile.json")
        atomic.write_json(profile_path, profile)
        cmd += ["--profile-file", profile_path]
    else:
        cmd += ["--profile", profile]
    if tcp_port is not None:
        cmd += ["--tcp", str(tcp_port)]
    if sensor_dir is not None:
        cmd += ["--sensor-dir", os.path.abspath(sensor_dir)]
    if link is not None:
        cmd += ["--link", link]
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = REPO_ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    log_path = os.path.join(state_dir, "vboard.log")
    line = lifeline.Lifeline()          # the board ends with this process, however it ends
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=line.env(full_env),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                pass_fds=line.pass_fds)
    line.started()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            line.cut()
            with open(log_path) as f:
                raise RuntimeError("virtual board exited (%s): %s" % (proc.returncode, f.read()))
        try:
            with open(status_path) as f:
                status = json.load(f)
            if status.get("pid") == proc.pid:
                return BoardHandle(proc, status, log_path, line)
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    line.cut()
    raise RuntimeError("virtual board did not come up within %.0f s (see %s)" % (timeout, log_path))


def provision(state_dir, device_dir=None, files=None):
    """Place files straight into the board's /flash (before a flash tool exists): every .py
    of `device_dir` plus `files` {name: bytes}. Takes effect at the next (soft) boot."""
    flash = os.path.join(os.path.abspath(state_dir), "flash")
    os.makedirs(flash, exist_ok=True)
    if device_dir is not None:
        for name in sorted(os.listdir(device_dir)):
            if name.endswith(".py"):
                with open(os.path.join(device_dir, name), "rb") as f:
                    atomic.write_bytes(os.path.join(flash, name), f.read())
    for name, data in (files or {}).items():
        atomic.write_bytes(os.path.join(flash, name), data)


def write_flash(state_dir, address, data):
    """Program bytes into the board's 16 MiB flash chip (DIR/flash.bin) at `address`."""
    fs.write_flash(os.path.abspath(state_dir), address, data)


FLASHED = "flashed.json"


def mark_flashed(state_dir, info):
    """Record that a flash tool wrote this board (host/flash.py): `serial_eval --port virtual`
    then runs what is on it instead of provisioning it from the repository."""
    atomic.write_json(os.path.join(os.path.abspath(state_dir), FLASHED), info)


def flashed(state_dir):
    """The record of the last flash of this board (dict), or None."""
    try:
        with open(os.path.join(os.path.abspath(state_dir), FLASHED)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
