"""`python -m host.vboard --state DIR [--profile P | --profile-file JSON] [--tcp PORT]
[--link FILE] [--sensor-dir DIR] [--log-rate R] [--seed N] [--board dan|kd233|...]
[--isp-crc-errors RATE]`

Creates the board's pty, writes DIR/port.json ({port, url, pid, profile, state}) once the
board is ready (and `--link FILE` as a symlink to the pty), prints the pty path on stdout,
then runs the board until SIGTERM/SIGINT; port.json and the link are removed on exit.
"""
import argparse
import json
import os
import signal
import sys

if "tensorflow" in sys.modules:  # pragma: no cover - a guard, not a feature
    raise SystemExit("host.vboard must not share a process with TensorFlow")

from host.vboard import fs, modem, profiles  # noqa: E402
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
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    state = os.path.abspath(args.state)
    os.makedirs(state, exist_ok=True)
    profile_spec = args.profile
    if args.profile_file:
        with open(args.profile_file) as f:
            profile_spec = json.load(f)
    profile = profiles.get(profile_spec)
    line = Line(tcp_port=args.tcp, noise_seed=args.seed)
    board = Board(state, profile, line, sensor_dir=args.sensor_dir, log_rate=args.log_rate,
                  seed=args.seed, wiring=args.board, isp_crc_errors=args.isp_crc_errors)
    fs.ensure_flash(state)
    try:
        lines = modem.LineServer(line.path, board.set_lines)
    except OSError as exc:          # the board still runs; only DTR/RTS cannot reach it
        sys.stderr.write("vboard: no DTR/RTS line socket for %s: %s\n" % (line.path, exc))
        lines = None
    status_path = os.path.join(state, "port.json")
    url = "socket://127.0.0.1:%d" % line.tcp_port if args.tcp is not None else None

    def cleanup(*_):
        for path in (status_path, args.link):
            if path and os.path.lexists(path):
                os.remove(path)
        if lines is not None:
            lines.close()
        line.close()
        os._exit(0)

    signal.signal(signal.SIGTERM, cleanup)
    signal.signal(signal.SIGINT, cleanup)
    if args.link:
        if os.path.lexists(args.link):
            os.remove(args.link)
        os.symlink(line.path, args.link)
    status = {"port": line.path, "url": url, "pid": os.getpid(), "profile": profile.name,
              "state": state, "board": args.board}
    tmp = status_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(status, f)
    os.replace(tmp, status_path)
    sys.stdout.write("%s\n" % line.path)
    sys.stdout.flush()
    board.run()


if __name__ == "__main__":
    main()
