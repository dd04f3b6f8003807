"""`host/flash.py`: put a build (manifest.json) on a K210 board and prove it is there.

1. Reach the board's raw REPL (interrupting main.py's grace period or a running script;
   a board in k210-deploy serve mode is sent the protocol's EXIT first) and probe it
   (host/board_probe.py); refuse, before writing anything, a kmodel its firmware cannot load
   or that does not fit its heap (`--force` skips this).
2. Write the model: `kflash` (default) builds a .kfpkg (host/kfpkg.py; the model at the flash
   address, the firmware at 0 when given) and runs kflash as a library (host/flashing.py);
   `repl` uploads the model as a file instead (no ISP reset).
3. Upload device/*.py and config.json (host/devconfig.py) through the raw REPL, verified
   (host/upload.py), into /sd when a card is mounted (the firmware boots from there), else
   /flash.
4. Verify on the board: CRC32 of the flash region (Maix.utils.flash_read) or of the model
   file, every script's size and CRC32, and the protocol's HELLO/INFO naming the manifest's
   kmodel sha256 with the model loaded, after a reboot (machine.reset()) so the board runs
   the files just written, as it will from now on. Print a summary; write flash_report.json
   beside the manifest.

`--port virtual` starts the virtual K210 (host/vboard) on build/vboard and lets kflash reset it
through DTR/RTS by host.vboard.modem's pyserial patch, installed in this process for the
virtual board only (a pty has no modem lines; the patch never acts on a real port). The
state directory is then marked as flashed, so `serial_eval --port virtual` runs what was
flashed instead of provisioning it from the repository.
"""
import os
import sys
import tempfile
import time

from host import atomic, board_probe, devconfig, flashing, k210fit, kfpkg
from host import manifest as manifest_mod
from host import session, transport
from host.cli import REPO_ROOT
from host.errors import UserError
from host.rawrepl import RawRepl, ReplError
from host.upload import Uploader, crc32

DEVICE_DIR = os.path.join(REPO_ROOT, "device")
# Device-dialect modules a board never imports, so not uploaded: float32.py emulates the
# board's binary32 floats where floats are doubles (host; the virtual board's shims provide
# it), protocol_host.py is the host's half of the frame codec.
HOST_ONLY_DEVICE_FILES = ("float32.py", "protocol_host.py")
REPL_BAUD = devconfig.REPL_BAUD
BOOT_TIME = 8.0      # s a rebooting board may take to reach serve mode (firmware + grace)


def _say(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class Plan(object):
    """Everything decided before the board is touched."""

    def __init__(self, opts):
        self.manifest = manifest_mod.load(opts.manifest)          # verifies the kmodel hash
        self.kmodel = self.manifest.kmodel_bytes()
        self.method = opts.method
        self.address = self.manifest["flash"]["address"] if opts.address is None \
            else opts.address
        self.firmware = None
        if opts.firmware:
            if self.method != "kflash":
                raise UserError("--firmware needs --method kflash (the REPL cannot replace "
                                "the firmware that runs it)")
            if not os.path.isfile(opts.firmware):
                raise UserError("firmware %s not found: pass a MaixPy/CanMV .bin"
                                % opts.firmware)
            with open(opts.firmware, "rb") as f:
                self.firmware = f.read()
            if not self.firmware:
                raise UserError("firmware %s is empty" % opts.firmware)
            if self.firmware[:4] in (b"PK\x03\x04", b"\x7fELF"):
                raise UserError("firmware %s is a .kfpkg or an ELF file: pass the plain .bin"
                                % opts.firmware)
            self.firmware_name = os.path.basename(opts.firmware)
        if self.method == "kflash":
            problems = k210fit.flash_placement(self.address, len(self.kmodel),
                                               allow_below_firmware=opts.force)[1]
            if problems:
                raise UserError("; ".join(problems))
            self.entries = []
            if self.firmware is not None:
                self.entries.append(kfpkg.Entry(self.firmware_name, 0, self.firmware,
                                                firmware=True))
            self.entries.append(kfpkg.Entry(os.path.basename(self.manifest["kmodel"]["path"]),
                                            self.address, self.kmodel))
            kfpkg.check(self.entries)
        self.opts = opts

    def config(self, root):
        """config.json for scripts living in `root` ('/flash' or '/sd')."""
        m = dict(self.manifest)
        m["flash"] = dict(m["flash"], address=self.address)
        if self.method == "kflash":
            return devconfig.device_config(m, baud=self.opts.serve_baud, model_source="flash")
        return devconfig.device_config(m, baud=self.opts.serve_baud, model_source="file",
                                       model_path=self.model_path(root))

    def model_path(self, root):
        if self.opts.model_path:
            return self.opts.model_path
        return root + "/" + os.path.basename(self.manifest["kmodel"]["path"])

    def files(self, root):
        """[(board path, bytes)]: device/*.py (but the host-only float32.py) then config.json."""
        out = []
        for name in sorted(os.listdir(DEVICE_DIR)):
            if name.endswith(".py") and name not in HOST_ONLY_DEVICE_FILES:
                with open(os.path.join(DEVICE_DIR, name), "rb") as f:
                    out.append((root + "/" + name, f.read()))
        text = devconfig.to_json(self.config(root))
        out.append((root + "/config.json", text.encode("utf-8")))
        return out


# ------------------------------------------------------------------ the port
class Port(object):
    """The board's serial port (and, for `virtual`, the virtual board behind it)."""

    def __init__(self, opts):
        self.spec = opts.port
        self.handle = None
        self.ser = None
        if "," in opts.port:
            raise UserError("--port %s names several ports: flash one board at a time"
                            % opts.port)
        if opts.port == transport.VIRTUAL:
            from host.vboard import launcher, modem
            modem.install()          # virtual board only: DTR/RTS over its line socket
            state = opts.vboard_state
            try:
                self.handle = launcher.start_board(state, profile=opts.vboard_profile,
                                                   board=opts.board, log_rate=0.0,
                                                   isp_crc_errors=opts.vboard_isp_crc_errors,
                                                   seed=opts.vboard_seed)
            except RuntimeError as exc:
                raise UserError("the virtual board in %s did not start: %s"
                                % (state, " ".join(str(exc).split())[:300]))
            self.device = self.handle.port
            self.name = "virtual (%s, %s)" % (os.path.relpath(self.handle.state_dir),
                                              self.device)
        else:
            self.device = opts.port
            self.name = opts.port
            if transport.is_url(opts.port) and opts.method == "kflash":
                raise UserError("kflash needs a serial device, not %s: use --method repl over "
                                "a URL" % opts.port)
            if os.path.realpath(opts.port).startswith("/dev/pts/"):
                # a pseudo-terminal (never a real serial device): if a virtual board serves
                # it, its DTR/RTS go over the board's line socket too
                from host.vboard import modem
                if modem.board_listening(opts.port):
                    modem.install()

    def open(self):
        self.ser = transport.open_serial(self.device, REPL_BAUD, timeout=0.05)
        return self.ser

    def close_serial(self):
        if self.ser is not None:
            try:
                self.ser.close()
            except Exception:
                pass
            self.ser = None

    def close(self):
        self.close_serial()
        if self.handle is not None:
            self.handle.stop()
            self.handle = None


def reach_repl(port, timeout, serve_bauds):
    """Open the port and enter the raw REPL within `timeout` s (bounded); returns a RawRepl."""
    ser = port.open()
    repl = RawRepl(ser, port.name)
    first = min(timeout, max(2.0, timeout / 2.0))
    try:
        repl.enter(first)
        return repl
    except ReplError:
        pass
    session.exit_serve_mode(ser, serve_bauds)
    try:
        repl.enter(max(1.0, timeout - first))
        return repl
    except ReplError:
        got = bytes(repl.received[-200:]).decode("latin-1")
        got = " ".join("".join(c if 32 <= ord(c) < 127 else " " for c in got).split())
        if not repl.received:
            raise UserError("no board answered on %s within %.0f s: nothing was received "
                            "(check the port and cable, that the board is powered and runs "
                            "MaixPy/CanMV; press its reset button and retry, or raise "
                            "--timeout)" % (port.name, timeout))
        raise UserError("the board on %s sent %d bytes but no MicroPython raw REPL within "
                        "%.0f s (last text: %r): reset the board and retry"
                        % (port.name, len(repl.received), timeout, got[-100:]))


# ------------------------------------------------------------------ the run
def _progress_bar(total, desc, enabled):
    if not enabled:
        return None, (lambda n: None)
    from tqdm import tqdm
    bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
               dynamic_ncols=True)
    return bar, bar.update


def run(opts):
    t_start = time.monotonic()
    plan = Plan(opts)
    port = Port(opts)
    report = {"port": port.name, "board": opts.board, "method": opts.method,
              "manifest": plan.manifest.path, "kmodel_sha256": plan.manifest["kmodel"]["sha256"],
              "items": []}
    try:
        return _run(opts, plan, port, report, t_start)
    finally:
        port.close()


def _run(opts, plan, port, report, t_start):
    progress = not opts.no_progress
    serve_bauds = sorted({opts.serve_baud, devconfig.DEFAULT_BAUD})
    repl = reach_repl(port, opts.timeout, serve_bauds)
    info = board_probe.probe(repl, port.name)
    report["board_info"] = info
    _say("board on %s: %s" % (port.name, board_probe.describe(info)))
    _check_board(info, plan, port, opts, replacing=plan.firmware is not None)
    root = "/sd" if "sd" in (info.get("mounts") or []) else "/flash"
    files = plan.files(root)
    needed = sum(len(d) for _, d in files) + (len(plan.kmodel) if opts.method == "repl" else 0)
    if info.get("flash_free") is not None and root == "/flash" and needed > info["flash_free"] \
            + 64 * 1024:
        raise UserError("/flash on %s has %d bytes free, the files need about %d: remove files "
                        "from it or use an SD card" % (port.name, info["flash_free"], needed))
    if port.handle is not None:
        from host.vboard import launcher
        launcher.mark_flashed(port.handle.state_dir, dict(report, complete=False))

    # -- 2. the model (and firmware)
    if opts.method == "kflash":
        pending = _changed_entries(repl, port, plan.entries, info)
        for e in plan.entries:
            if e not in pending:
                report["items"].append({"what": e.name, "where": "flash 0x%X" % e.address,
                                        "address": e.address, "bytes": e.flash_size,
                                        "method": "kflash", "state": "unchanged"})
        if pending:
            repl = _kflash(repl, port, pending, opts, report, progress, serve_bauds)
            if plan.firmware is not None:
                info = board_probe.probe(repl, port.name)
                report["board_info_after"] = info
                _say("board on %s now runs: %s" % (port.name, board_probe.describe(info)))
                _check_board(info, plan, port, opts, replacing=False, after_firmware=True)
        else:
            _say("kflash: the board's flash already holds %s: nothing to write"
                 % ", ".join(e.name for e in plan.entries))
    uploader = Uploader(repl, port.name)
    if opts.method == "repl":
        path = plan.model_path(root)
        bar, step = _progress_bar(len(plan.kmodel), "model (REPL)", progress)
        t0 = time.monotonic()
        state = uploader.upload(path, plan.kmodel, step)
        if bar is not None:
            bar.close()
        report["items"].append({"what": "kmodel", "where": path, "bytes": len(plan.kmodel),
                                "method": "raw REPL 115200 baud", "state": state,
                                "seconds": time.monotonic() - t0})

    # -- 3. scripts and config
    total = sum(len(d) for _, d in files)
    bar, step = _progress_bar(total, "scripts (REPL)", progress)
    for path, data in files:
        t0 = time.monotonic()
        state = uploader.upload(path, data, step)
        report["items"].append({"what": os.path.basename(path), "where": path,
                                "bytes": len(data), "method": "raw REPL", "state": state,
                                "seconds": time.monotonic() - t0})
    if bar is not None:
        bar.close()

    # -- 4. verify on the board
    checks = []
    if opts.method == "kflash":
        for e in plan.entries:
            image = e.image()
            got = uploader.flash_crc(e.address, len(image))
            want = crc32(image)
            if got is None:
                checks.append(("%s at 0x%X" % (e.name, e.address), "not readable from Python "
                               "(no Maix.utils.flash_read): checked by loading it below"))
                continue
            if got != want:
                raise UserError("the flash of the board on %s does not hold %s at 0x%X (board "
                                "crc32 %08x, build %08x): run the flash again (--baud 115200 "
                                "if it repeats)" % (port.name, e.name, e.address, got, want))
            checks.append(("%s at 0x%X" % (e.name, e.address), "crc32 %08x ok" % got))
    else:
        path = plan.model_path(root)
        if uploader.stat(path) != (len(plan.kmodel), crc32(plan.kmodel)):
            raise UserError("%s on the board on %s does not match the build's kmodel: run the "
                            "flash again" % (path, port.name))
        checks.append((path, "crc32 %08x ok" % crc32(plan.kmodel)))
    for path, data in files:
        if uploader.stat(path) != (len(data), crc32(data)):
            raise UserError("%s on the board on %s does not match what was uploaded: run the "
                            "flash again" % (path, port.name))
    checks.append(("%d scripts + config.json in %s" % (len(files) - 1, root), "crc32 ok"))
    hello = _hello(repl, port, plan, opts)
    checks.append(("protocol HELLO", hello))
    report["checks"] = [{"what": w, "result": r} for w, r in checks]
    report["seconds"] = time.monotonic() - t_start
    report["repl_upload"] = {"bytes": uploader.bytes_sent, "seconds": uploader.seconds,
                             "baud": REPL_BAUD, "resent_blocks": uploader.resent_blocks,
                             "resent_files": uploader.resent_files}
    if port.handle is not None:
        from host.vboard import launcher
        launcher.mark_flashed(port.handle.state_dir, dict(report, complete=True))
    atomic.write_json(os.path.join(plan.manifest.directory, "flash_report.json"), report)
    _summary(report, checks)
    return 0


def _check_board(info, plan, port, opts, replacing, after_firmware=False):
    """Refuse a kmodel the board's firmware cannot load (before anything is written); with a
    new firmware on its way the check waits until that firmware runs."""
    if replacing:
        _say("note: the firmware is being replaced: whether it loads the kmodel is checked "
             "once it runs")
        return
    why = board_probe.problem(info, plan.kmodel)
    if why is None:
        return
    if opts.force:
        _say("warning: --force: the board's firmware cannot use this kmodel: %s" % why)
    elif after_firmware:
        raise UserError("the firmware just written to %s (%s) cannot use this kmodel: %s"
                        % (port.name, board_probe.describe(info), why))
    else:
        board_probe.check(info, plan.kmodel, port.name)


def _changed_entries(repl, port, entries, info):
    """The entries whose bytes the board's flash does not hold yet (all of them when the
    firmware cannot read its flash from Python)."""
    if not info.get("flash_read"):
        return list(entries)
    probe = Uploader(repl, port.name)
    return [e for e in entries
            if probe.flash_crc(e.address, len(e.image())) != crc32(e.image())]


def _kflash(repl, port, entries, opts, report, progress, serve_bauds):
    """kflash the entries (the REPL port is closed meanwhile); returns the new REPL."""
    repl.exit()
    port.close_serial()
    with tempfile.TemporaryDirectory(prefix="k210-kfpkg-") as tmp:
        _say("kflash: %s to %s (board %s, %d baud)"
             % (", ".join("%s at 0x%X" % (e.name, e.address) for e in entries),
                port.name, opts.board, opts.baud))
        runs = flashing.flash(port.device, entries, tmp, board=opts.board,
                              baud=opts.baud, progress=progress, say=_say)
    first = runs[0]
    for e in entries:
        nbytes, seconds = first.files.get(e.name, (e.flash_size, 0.0))
        report["items"].append({"what": e.name, "where": "flash 0x%X" % e.address,
                                "address": e.address, "bytes": e.flash_size,
                                "method": "kflash %d baud" % opts.baud, "state": "written",
                                "seconds": seconds, "passes": len(runs)})
    stub_bytes, stub_seconds = first.files.get("ISP", (0, 0.0))
    written = [first.files.get(e.name, (0, 0.0)) for e in entries]
    report["kflash"] = {"passes": len(runs), "seconds": sum(r.seconds for r in runs),
                        "checksum_errors": sum(r.checksum_errors for r in runs),
                        "bytes": sum(e.flash_size for e in entries),
                        "baud": opts.baud, "stub_bytes": stub_bytes,
                        "stub_seconds": stub_seconds,
                        "write_rate": _rate(sum(w[0] for w in written),
                                            sum(w[1] for w in written))}
    # the stub rebooted the board into its firmware: back to its REPL
    return reach_repl(port, opts.timeout + 5.0, serve_bauds)


def _hello(repl, port, plan, opts):
    """Reboot the board (machine.reset(), as after power-on), so it boots from what was just
    written: boot.py, main.py, serve mode from config.json; then HELLO -> INFO must name the
    manifest's kmodel, loaded; EXIT leaves the board at its REPL."""
    try:
        repl.reset_board()
    except ReplError as exc:
        raise UserError("the board on %s did not take the reset command: %s" % (port.name, exc))
    sess = session.Session(port.ser, port.name, opts.serve_baud, timeout=opts.timeout,
                               booting=True, boot_time=BOOT_TIME)
    try:
        info = sess.connect()
        sess.check_model(plan.manifest, plan.manifest.path)
    finally:
        sess.close()
    return ("rebooted into serve mode at %d baud; INFO names kmodel sha256 %s..., loaded "
            "from %s (API %s)" % (info.get("baud") or opts.serve_baud,
                                  str(info.get("model_sha256"))[:12],
                                  info.get("model_source") or "?", info.get("api")))


def _rate(nbytes, seconds):
    return nbytes / seconds if seconds > 0 else 0.0


def _summary(report, checks):
    _say("")
    _say("Flashed %s (board %s, method %s) in %.1f s:" % (report["port"], report["board"],
                                                         report["method"], report["seconds"]))
    for item in report["items"]:
        speed = ""
        if item.get("state") != "unchanged" and item.get("seconds"):
            speed = "%6.1f KB/s" % (_rate(item["bytes"], item["seconds"]) / 1000.0)
        _say("  %-16s %8d B  -> %-26s %-22s %s %s"
             % (item["what"][:16], item["bytes"], item["where"], item["method"],
                item.get("state", ""), speed))
    k = report.get("kflash")
    if k:
        _say("  kflash: %.1f s in all (stub %d B at 115200 baud in %.1f s); writes at %.1f KB/s "
             "= %.0f%% of the %d-baud line rate; %d pass(es), %d checksum error(s)"
             % (k["seconds"], k["stub_bytes"], k["stub_seconds"], k["write_rate"] / 1000.0,
                100.0 * k["write_rate"] / (k["baud"] / 10.0), k["baud"], k["passes"],
                k["checksum_errors"]))
    up = report["repl_upload"]
    if up["bytes"]:
        rate = _rate(up["bytes"], up["seconds"])
        _say("  REPL upload: %d bytes in %.1f s = %.1f KB/s (%.0f%% of the %d-baud line rate)"
             % (up["bytes"], up["seconds"], rate / 1000.0, 100.0 * rate / (up["baud"] / 10.0),
                up["baud"]))
    _say("Verified on the board:")
    for what, result in checks:
        _say("  %-34s %s" % (what, result))
