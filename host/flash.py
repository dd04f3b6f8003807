#!/usr/bin/env python
"""Flash a build to a K210 board (Sipeed Maix: MaixPy or CanMV) and verify it on the board.

Reads the board through its raw REPL first and refuses, before writing anything, a kmodel
its firmware cannot load or that does not fit its memory. Then writes the kmodel (kflash
through the ISP, or as a file through the REPL), uploads device/*.py and config.json with
size + CRC32 checks, verifies the flash region's CRC32 on the board, and asks the board for
the protocol's HELLO naming the manifest's kmodel.

Examples:
  python host/flash.py --port /dev/ttyUSB0                    # Maix Dock (dan), 1.5 Mbaud
  python host/flash.py --port /dev/ttyUSB0 --board kd233 --baud 115200
  python host/flash.py --port /dev/ttyUSB0 --firmware canmv.bin   # firmware at 0 as well
  python host/flash.py --port COM3 --method repl               # model as /flash/model.kmodel
  python host/flash.py --port virtual                          # the virtual K210 (build/vboard)

Exit codes: 0 flashed and verified, 2 usage, I/O or refusal (one line on stderr).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from host import cli  # noqa: E402
from host.cli import run  # noqa: E402
from host.errors import UserError  # noqa: E402
from host.flashing import BOARDS  # noqa: E402


def _address(text):
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an address (e.g. 0x300000)" % text)
    if value <= 0:
        raise argparse.ArgumentTypeError("address must be > 0 (the firmware lives at 0)")
    return value


def parser():
    p = cli.ArgumentParser(prog="host/flash.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", required=True,
                   help="the board's serial port (/dev/ttyUSB0, COM3, a pyserial URL for "
                   "--method repl) or virtual (the virtual K210 in --vboard-state)")
    p.add_argument("--board", default="dan", choices=BOARDS,
                   help="board type for kflash's DTR/RTS reset into ISP mode (default dan: "
                   "Maix Dock; bit: Maix Bit; kd233; goE/maixduino; goD; trainer)")
    p.add_argument("--baud", type=int, default=1500000,
                   help="kflash ISP baud rate (default 1500000; 115200 for slow bridges)")
    p.add_argument("--address", type=_address, default=None,
                   help="flash address of the kmodel (default: the manifest's, 0x300000)")
    p.add_argument("--method", default="kflash", choices=("kflash", "repl"),
                   help="kflash: model into the SPI flash through the ISP (default); repl: "
                   "model as a file through the REPL (no ISP reset needed)")
    p.add_argument("--model-path", default=None,
                   help="--method repl: board path of the model file (default "
                   "/flash/<name>.kmodel, /sd/... when a card is mounted)")
    p.add_argument("--firmware", default=None, metavar="PATH.bin",
                   help="also write this firmware .bin at address 0 (kflash method)")
    p.add_argument("--manifest", default=os.path.join("build", "manifest.json"),
                   help="manifest written by make kmodel (default build/manifest.json)")
    p.add_argument("--force", action="store_true",
                   help="flash even when the board's firmware cannot load the kmodel or it "
                   "does not fit (experts; the board will fail to load it)")
    p.add_argument("--serve-baud", type=int, default=1500000,
                   help="serve-mode baud rate written to config.json (default 1500000)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for a silent board (default 10)")
    p.add_argument("--vboard-state", default=os.path.join("build", "vboard"),
                   help="--port virtual: state directory of the virtual board")
    p.add_argument("--vboard-profile", default="canmv-v5",
                   help="--port virtual: firmware profile the virtual board runs")
    p.add_argument("--vboard-isp-crc-errors", type=float, default=0.0, metavar="RATE",
                   help="--port virtual: fraction of ISP writes the board answers with a "
                   "checksum error (tests kflash's retry)")
    p.add_argument("--vboard-seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv):
    opts = parser().parse_args(argv)
    if opts.baud <= 0 or opts.serve_baud <= 0:
        raise UserError("--baud and --serve-baud must be positive")
    if opts.timeout <= 0:
        raise UserError("--timeout must be > 0 seconds")
    if opts.model_path and opts.method != "repl":
        raise UserError("--model-path needs --method repl")
    from host import deploy
    return deploy.run(opts)


if __name__ == "__main__":
    # a crash's traceback goes beside the manifest, where flash_report.json goes
    run(main, crash_log="flash-error.log", crash_dir=lambda argv: os.path.dirname(
        os.path.abspath(cli.option_value(argv, "--manifest", parser().get_default("manifest")))))
