"""Opening the serial link(s) to the board(s) for `serial_eval`.

A port is a device path (`/dev/ttyUSB0`, `COM3`), a pyserial URL (`socket://host:port`,
`rfc2217://host:port`, `loop://`, ...; `serial.serial_for_url` handles them all), or
`virtual`: start the virtual K210 (`host.vboard`, its own process) on a state directory
(default build/vboard/). `virtual:N` starts N virtual boards (state dirs DIR, DIR-2, ...,
DIR-N); `virtual,virtual` is the same as `virtual:2`. Several comma-separated ports shard the
images across the boards.

A virtual board whose /flash does not hold this repo's device scripts and a config.json for
the manifest's kmodel is provisioned first (what a flash step writes: device/*.py,
config.json from host.devconfig, the kmodel programmed into its flash chip at the manifest's
address), so `serial_eval` runs right after `make kmodel`. A virtual board that
`host/flash.py` has flashed (its state holds flashed.json) is never provisioned: it runs
what was flashed, as a real board would.

Every failure to open a port is a one-line UserError naming the port and what to do.
"""
import errno
import hashlib
import os
import re

import serial

from host import devconfig
from host.cli import REPO_ROOT
from host.errors import UserError, one_line

VIRTUAL = "virtual"
DEFAULT_VBOARD_STATE = os.path.join("build", "vboard")
DEVICE_DIR = os.path.join(REPO_ROOT, "device")
REPL_BAUD = devconfig.REPL_BAUD
MAX_VIRTUAL = 8

_URL = re.compile(r"^[a-z][a-z0-9+]*://", re.I)


class PortSpec(object):
    """One board to talk to: `kind` 'virtual' (with `index`) or 'serial' (`name`)."""

    def __init__(self, kind, name, index=0):
        self.kind = kind
        self.name = name
        self.index = index

    def __repr__(self):
        return "PortSpec(%s, %s, %d)" % (self.kind, self.name, self.index)


def parse_ports(text):
    """'--port' text -> [PortSpec]. Refuses empty items and duplicates of a real port."""
    if not text or not text.strip():
        raise UserError("--port is empty: pass a device path (/dev/ttyUSB0), a pyserial URL "
                        "(socket://host:port) or virtual")
    specs = []
    virtual = 0
    for item in [t.strip() for t in text.split(",")]:
        if not item:
            raise UserError("--port %r has an empty item: separate ports with single commas"
                            % text)
        m = re.match(r"^virtual(?::(\d+))?$", item)
        if m:
            count = int(m.group(1)) if m.group(1) else 1
            if count < 1:
                raise UserError("--port %s: the number of virtual boards must be >= 1" % item)
            for _ in range(count):
                specs.append(PortSpec(VIRTUAL, VIRTUAL, virtual))
                virtual += 1
        else:
            if any(s.kind == "serial" and s.name == item for s in specs):
                raise UserError("--port names %s twice: one session per port" % item)
            specs.append(PortSpec("serial", item))
    if virtual > MAX_VIRTUAL:
        raise UserError("--port asks for %d virtual boards: at most %d" % (virtual, MAX_VIRTUAL))
    return specs


def is_url(name):
    """A pyserial URL (socket://, rfc2217://, loop://, ...) rather than a device path."""
    return bool(_URL.match(name))


def vboard_state_dir(base, index):
    """State directory of the index-th virtual board: base, base-2, base-3, ..."""
    return base if index == 0 else "%s-%d" % (base.rstrip("/\\"), index + 1)


# ------------------------------------------------------------------ real ports
def open_serial(name, baud=REPL_BAUD, timeout=0.05):
    """Open a device path or pyserial URL with DTR and RTS low (on Sipeed boards they drive
    RESET and the boot pin). Exclusive on device paths: a port another program holds is
    refused instead of shared."""
    is_url = bool(_URL.match(name))
    if not is_url and not os.path.exists(name):
        raise UserError("port %s does not exist: pass the board's serial device (list them "
                        "with `python -m serial.tools.list_ports`), a URL such as "
                        "socket://host:port, or virtual" % name)
    try:
        ser = serial.serial_for_url(name, do_not_open=True)
    except (ValueError, serial.SerialException) as exc:
        raise UserError("port %s: %s: use a device path, socket://host:port, "
                        "rfc2217://host:port or virtual" % (name, one_line(exc)))
    ser.baudrate = baud
    ser.timeout = timeout
    ser.write_timeout = None
    if not is_url:
        ser.exclusive = True
    try:
        ser.dtr = False
        ser.rts = False
    except (serial.SerialException, OSError, ValueError):  # pragma: no cover - exotic URLs
        pass
    try:
        ser.open()
    except (serial.SerialException, OSError, ValueError) as exc:
        raise UserError(_open_error(name, exc, is_url))
    return ser



def _open_error(name, exc, is_url):
    text = one_line(exc)
    code = getattr(exc, "errno", None)
    low = text.lower()
    if code == errno.EACCES or "permission denied" in low or "errno 13" in low:
        return ("permission denied on %s: add your user to the port's group (e.g. "
                "`sudo usermod -aG dialout $USER`, then log in again)" % name)
    if code == errno.EBUSY or "exclusively lock" in low or "resource busy" in low \
            or "errno 16" in low:
        return ("port %s is busy: another program (a serial monitor, MaixPy IDE, another "
                "serial_eval) holds it; close it and retry" % name)
    if code == errno.ENOENT or "no such file" in low or "errno 2]" in low:
        return ("port %s does not exist: pass the board's serial device (list them with "
                "`python -m serial.tools.list_ports`) or virtual" % name)
    if code == errno.ENOTTY or "inappropriate ioctl" in low or "errno 25" in low:
        return "%s is not a serial port: pass the board's serial device or virtual" % name
    if is_url and ("refused" in low or "errno 111" in low):
        return "nothing listens on %s (connection refused): start the server and retry" % name
    return "cannot open port %s: %s" % (name, text)


# ------------------------------------------------------------------ virtual boards
def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def provision_plan(state_dir, manifest, baud):
    """What a flash step would write to a virtual board for this manifest and is missing or
    different: ({file name: bytes}, kmodel bytes or None). The config comes from
    host.devconfig (model in flash at the manifest's address)."""
    flash_dir = os.path.join(state_dir, "flash")
    files = {}
    for name in sorted(os.listdir(DEVICE_DIR)):
        if name.endswith(".py"):
            with open(os.path.join(DEVICE_DIR, name), "rb") as f:
                files[name] = f.read()
    config = devconfig.device_config(manifest, baud=baud)
    files["config.json"] = devconfig.to_json(config).encode("utf-8")
    wanted = {}
    for name, data in files.items():
        try:
            with open(os.path.join(flash_dir, name), "rb") as f:
                same = f.read() == data
        except OSError:
            same = False
        if not same:
            wanted[name] = data
    kmodel = manifest.kmodel_bytes()
    address = config["model"]["address"]
    chip = os.path.join(state_dir, "flash.bin")
    present = False
    if os.path.isfile(chip):
        with open(chip, "rb") as f:
            f.seek(address)
            present = _sha256(f.read(len(kmodel))) == manifest["kmodel"]["sha256"]
    return wanted, (None if present else kmodel), address


def provision_virtual(state_dir, manifest, baud):
    """Bring a virtual board's /flash and flash chip up to this manifest; returns a short
    description of what was written ('' when nothing was needed)."""
    from host.vboard import launcher
    state_dir = os.path.abspath(state_dir)
    if launcher.flashed(state_dir) is not None:
        return ""           # flashed by host/flash.py: run what is on it
    files, kmodel, address = provision_plan(state_dir, manifest, baud)
    done = []
    if files:
        launcher.provision(state_dir, files=files)
        done.append(", ".join(sorted(files)))
    if kmodel is not None:
        launcher.write_flash(state_dir, address, kmodel)
        done.append("kmodel (%d bytes) at flash 0x%X" % (len(kmodel), address))
    return "; ".join(done)


def start_virtual(state_dir, manifest, baud, profile="canmv-v5", log_rate=0.05, seed=0,
                  faults=""):
    """Provision (if needed) and start one virtual board (with a fault spec for its line,
    host/vboard/faults.py); returns (BoardHandle, note)."""
    from host.vboard import launcher
    try:
        note = provision_virtual(state_dir, manifest, baud)
    except OSError as exc:
        raise UserError("cannot prepare the virtual board in %s: %s" % (state_dir, one_line(exc)))
    try:
        handle = launcher.start_board(state_dir, profile=profile, log_rate=log_rate, seed=seed,
                                      faults=faults)
    except RuntimeError as exc:
        raise UserError("the virtual board in %s did not start: %s"
                        % (state_dir, one_line(exc)[:300]))
    return handle, note


def _short(path):
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


class Link(object):
    """An open connection to one board: `.ser` (pyserial), `.name` (for messages),
    `.virtual` (BoardHandle or None), `.note` (provisioning done), `.reopen()` (the same
    port opened again, e.g. after it vanished; UserError while it is not there), `.close()`."""

    def __init__(self, ser, name, virtual=None, note="", device=None):
        self.ser = ser
        self.name = name
        self.virtual = virtual
        self.note = note
        self.device = device

    def reopen(self):
        try:
            self.ser.close()
        except Exception:
            pass
        self.ser = open_serial(self.device)
        return self.ser

    def close(self):
        try:
            self.ser.close()
        except Exception:
            pass
        if self.virtual is not None:
            self.virtual.stop()
            self.virtual = None


def open_link(spec, manifest, baud, vboard_state=DEFAULT_VBOARD_STATE, vboard_log_rate=0.05,
              vboard_faults="", vboard_seed=0, vboard_profile=None):
    """PortSpec -> Link (board started and port open at the REPL speed). A virtual board's
    port is opened through its stable link (DIR/tty), which follows the pty when the fault
    layer unplugs it. It runs `vboard_profile`, by default the firmware the manifest's kmodel
    was made for."""
    if spec.kind == VIRTUAL:
        state = vboard_state_dir(vboard_state, spec.index)
        profile = vboard_profile or manifest.get("firmware") or "canmv-v5"
        handle, note = start_virtual(state, manifest, baud, profile=profile,
                                     log_rate=vboard_log_rate,
                                     seed=vboard_seed + spec.index, faults=vboard_faults)
        try:
            ser = open_serial(handle.link)
        except UserError:
            handle.stop()
            raise
        return Link(ser, "virtual (%s, %s)" % (_short(handle.state_dir), handle.port),
                    handle, note, device=handle.link)
    return Link(open_serial(spec.name), spec.name, device=spec.name)
