"""`python -m host.vboard --state DIR [--profile P | --profile-file JSON] [--tcp PORT]
[--link FILE] [--sensor-dir DIR] [--log-rate R] [--seed N] [--board dan|kd233|...]
[--isp-crc-errors RATE] [--faults SPEC] [--fault-seed N]`

Creates the board's pty, writes DIR/port.json ({port, link, url, pid, profile, state}) once
the board is ready, DIR/tty (and `--link FILE`) as a symlink to the pty, prints the pty path on
stdout, then runs the board until SIGTERM/SIGINT; port.json and the links are removed on exit.
`--faults` (host/vboard/faults.py) puts a fault injector on the line; a `disconnect` fault
replaces the pty, and port.json and the links follow it. SIGUSR2 unplugs the port once
(for `disconnect_ms`, default 300 ms), whatever the spec.
"""
import argparse
import json
import os
import errno
import faulthandler
import signal
import sys
import threading
import time

if "tensorflow" in sys.modules:  # pragma: no cover - a guard, not a feature
    raise SystemExit("host.vboard must not share a process with TensorFlow")

from host import lifeline  # noqa: E402
from host.vboard import faults, fs, modem, profiles  # noqa: E402
from host.vboard.board import Board  # noqa: E402
from host.vboard.line import Line  # noqa: E402

DEFAULT_STATE = os.path.join("build", "vboard")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m host.vboard", description=__doc__.split("\n")[0])
    ap.add_argument("--state", default=DEFAULT_STATE,
                    help="state directory: flash/ (the /flash filesystem), flash.bin, lcd/")
    ap.add_argument("--profile", default="canmv-v5", choices=profiles.names(),
                    help="firmware profile (host.firmware)")
    ap.add_argument("--profile-file", default=None, metavar="JSON",
                    help="a custom firmware profile in host.firmware's format (overrides "
                         "--profile), e.g. a build with another heap budget")
    ap.add_argument("--tcp", type=int, default=None, metavar="PORT",
                    help="also serve the UART on socket://127.0.0.1:PORT (0: any free port)")
    ap.add_argument("--link", default=None, metavar="FILE",
                    help="create FILE as a symlink to the pty")
    ap.add_argument("--sensor-dir", default=None, help="folder of images the camera sees")
    ap.add_argument("--log-rate", type=float, default=0.05,
                    help="random firmware log lines per second while scripts run (0: none)")
    ap.add_argument("--seed", type=int, default=0, help="seed for log lines and line noise")
    ap.add_argument("--board", default="dan", choices=sorted(modem.WIRING),
                    help="board type (kflash's -B names): how DTR/RTS drive RESET and BOOT "
                         "(default dan: RTS resets, DTR holds BOOT low)")
    ap.add_argument("--isp-crc-errors", type=float, default=0.0, metavar="RATE",
                    help="fraction of ISP flash-write frames answered with a checksum error "
                         "(as if corrupted on the wire; seeded by --seed)")
    ap.add_argument("--faults", default="", metavar="SPEC",
                    help="fault injection on the line, e.g. flip=0.02,drop=0.02,reset@300 "
                         "(host/vboard/faults.py)")
    ap.add_argument("--fault-seed", type=int, default=None, metavar="N",
                    help="seed of the fault injector (default --seed)")
    args = ap.parse_args(argv)
    try:
        args.fault_spec = faults.parse_spec(args.faults)
    except ValueError as exc:
        ap.error(str(exc))
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    state = os.path.abspath(args.state)
    os.makedirs(state, exist_ok=True)
    profile_spec = args.profile
    if args.profile_file:
        with open(args.profile_file) as f:
            profile_spec = json.load(f)
    profile = profiles.get(profile_spec)
    fault_seed = args.seed if args.fault_seed is None else args.fault_seed
    line = Line(tcp_port=args.tcp, noise_seed=args.seed, fault_spec=args.fault_spec,
                fault_seed=fault_seed, fault_log=os.path.join(state, "faults.json"))
    board = Board(state, profile, line, sensor_dir=args.sensor_dir, log_rate=args.log_rate,
                  seed=args.seed, wiring=args.board, isp_crc_errors=args.isp_crc_errors)
    line.on_reset = board.press_reset
    fs.ensure_flash(state)
    status_path = os.path.join(state, "port.json")
    tty_link = os.path.join(state, "tty")
    links = [p for p in (tty_link, args.link) if p]
    url = "socket://127.0.0.1:%d" % line.tcp_port if args.tcp is not None else None
    modem_server = [None]

    def serve_lines(path, tries=30):
        for k in range(tries):
            try:
                modem_server[0] = modem.LineServer(path, board.set_lines)
                return
            except OSError as exc:  # the board still runs; only DTR/RTS cannot reach it
                if exc.errno != errno.EADDRINUSE or k == tries - 1:
                    sys.stderr.write("vboard: no DTR/RTS line socket for %s: %s\n"
                                     % (path, exc))
                    return
            time.sleep(0.1)         # a pty number reused while its old socket winds down

    def publish(path):
        """The pty (re)appeared (path) or vanished (None): links and port.json follow."""
        for link in links:
            if os.path.lexists(link):
                os.remove(link)
            if path is not None:
                os.symlink(path, link)
        if modem_server[0] is not None:
            modem_server[0].close()
            modem_server[0] = None
        if path is None:
            return
        if line_thread[0]:
            threading.Thread(target=serve_lines, args=(path,), daemon=True).start()
        else:
            serve_lines(path, tries=1)
        status = {"port": path, "link": tty_link, "url": url, "pid": os.getpid(),
                  "profile": profile.name, "state": state, "board": args.board}
        tmp = status_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(status, f)
        os.replace(tmp, status_path)

    def cleanup(*_):
        # where every thread was when the board was stopped, into vboard.log (its stderr): a
        # board that went quiet under a host leaves a trace of what it was doing
        sys.stderr.write("vboard: stopping; its threads at that moment:\n")
        faulthandler.dump_traceback(all_threads=True)
        for path in [status_path] + links:
            if path and os.path.lexists(path):
                os.remove(path)
        if modem_server[0] is not None:
            modem_server[0].close()
        line.close()
        kpu = sys.modules.get("host.vboard.kpu")     # its Simulator worker goes with the board
        if kpu is not None:
            kpu.shutdown()
        os._exit(0)

    def unplug(*_):
        threading.Thread(target=line.disconnect, daemon=True,
                         args=(args.fault_spec.disconnect_ms / 1000.0,)).start()

    lifeline.watch_parent(cleanup)   # the process that started this board has gone
    signal.signal(signal.SIGTERM, cleanup)
    signal.signal(signal.SIGINT, cleanup)
    signal.signal(signal.SIGUSR2, unplug)
    line.on_path = publish
    line_thread = [False]
    publish(line.path)
    line_thread[0] = True           # from now on publish() runs in the line's thread
    sys.stdout.write("%s\n" % line.path)
    sys.stdout.flush()
    board.run()


if __name__ == "__main__":
    main()
