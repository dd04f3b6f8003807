"""The K210's boot ROM ISP and kflash's flash stub, as kflash 1.1.6 speaks to them
(docs/flashing.md, "The ISP wire protocol").

Runs in the board's main thread (the CPU) after a reset with BOOT (IO16) held low, reading
the REPL UART's bytes (paced and baud-checked by the line like any other traffic):

- SLIP frames `C0 ... C0` (escapes DB DC / DB DD). Requests `<u16 op><u16 0><u32 crc32>
  <u32 addr><u32 len><data>`, crc32 over addr|len|data, checked on every computed frame; the
  fixed 13-byte NOP/status/reboot frames (C2, D2, D9, D5) carry a zero CRC and are not checked.
  Replies are `C0 op reason C0` (never a C0/DB byte inside: kflash's reply parser mishandles
  SLIP escapes). Reasons: E0 ok, E1 bad length, E2 bad checksum, E3 invalid command, E4 bad
  init, E5 bad erase, E6 bad write, E7 busy.
- ROM: C2 greeting; C3 memory write to SRAM (0x80000000-0x805FFFFF); C6 ROM baud (goE/trainer,
  FT2232 rate skew 38.6/38 undone); C5 boot 0x80000000 (no reply): runs the stub only if the
  bytes written there are exactly the stub inside the installed kflash module, else the CPU
  runs unknown code and stays silent until the next reset.
- Stub (starts at 115200): D2 NOP; D6 baud (no reply); D7 flash init; D8 erase (4 KiB
  aligned; 0/0 = chip) + D9 status; D4 write (needs D7 first; 4 KiB aligned address; within
  the 16 MiB chip; up to 64 KiB; optional injected checksum errors); D5 reboot, answered D5 E0,
  then the board boots its firmware. A write replaces exactly the bytes it carries (the stub's
  read-erase-write of partial sectors is not modelled as a cost).

Every ISP session is appended to DIR/isp.json {"sessions": [...]} (writes, erases, bauds,
injected and detected checksum errors, whether the stub was kflash's, whether it rebooted)
for tests and the curious.
"""
import ast
import binascii
import importlib.util
import json
import os
import struct
import sys
import time
import zlib

from host.vboard import fs
from host.vboard.uart import REPL_BAUD

ISP_BUF = 1 << 18           # receive buffer while in ISP: a 64 KiB frame, SLIP-escaped, fits
SRAM_BASE = 0x80000000
SRAM_SIZE = 6 * 1024 * 1024
SECTOR = 4096
MAX_WRITE = 64 * 1024
FIXED_FRAME_OPS = (0xC2, 0xD2, 0xD9, 0xD5)
OK, BAD_LEN, BAD_CRC, BAD_CMD, BAD_INIT, BAD_ERASE, BAD_WRITE, BUSY = range(0xE0, 0xE8)

_STUB = {}


def kflash_stub():
    """The flash stub kflash uploads (ISP_PROG inside the installed kflash module), or None."""
    if "stub" not in _STUB:
        _STUB["stub"] = None
        try:
            spec = importlib.util.find_spec("kflash")
            with open(spec.origin) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Str) and \
                        any(getattr(t, "id", None) == "ISP_PROG" for t in node.targets):
                    _STUB["stub"] = zlib.decompress(binascii.unhexlify(node.value.s))
                    break
        except (ImportError, AttributeError, OSError, SyntaxError, ValueError, zlib.error):
            pass
    return _STUB["stub"]


def rom_baud(requested):
    """C6 asks for the FT2232 rate skewed by 38.6/38; the ROM's divider lands on the rate the
    host then uses."""
    return int(round(requested * 38 / 38.6))


class SlipReader(object):
    def __init__(self, port):
        self.port = port
        self.frame = None          # None: outside a frame
        self.escape = False

    def next(self):
        """The next complete frame (bytes, None if an escape was invalid). Blocks."""
        while True:
            data = self.port.take(None, 0.5, 0.0)
            for i, b in enumerate(data):
                if self.frame is None:
                    if b == 0xC0:
                        self.frame = bytearray()
                    continue                    # noise between frames
                if self.escape:
                    self.escape = False
                    if b == 0xDC:
                        self.frame.append(0xC0)
                    elif b == 0xDD:
                        self.frame.append(0xDB)
                    else:
                        self.frame = b"bad-escape"
                    continue
                if b == 0xDB:
                    self.escape = True
                elif b == 0xC0:
                    if not self.frame:
                        continue                # C0 C0: the second one starts the frame
                    frame, self.frame = self.frame, None
                    self._unread(data[i + 1:])
                    return None if frame == b"bad-escape" else bytes(frame)
                elif self.frame != b"bad-escape":
                    self.frame.append(b)

    def _unread(self, rest):
        if rest:
            with self.port.cond:
                self.port.rx[:0] = rest


class Isp(object):
    def __init__(self, board):
        self.board = board
        self.port = board.port
        self.stage = "rom"
        self.sram = bytearray(SRAM_SIZE)
        self.sram_written = set()   # 1 KiB-ish chunks: (addr, len)
        self.flash_ready = False
        self.baud = REPL_BAUD
        self.log = {"board": board.wiring, "stub": None, "stub_size": 0, "bauds": [REPL_BAUD],
                    "writes": [], "erases": [], "crc_errors_detected": 0,
                    "crc_errors_injected": 0, "rejected": [], "rebooted": False,
                    "started": time.time()}

    # -- wire
    def reply(self, op, reason):
        self.port.write(bytes((0xC0, op, reason, 0xC0)))

    def set_baud(self, baud, clear=False):
        """Switch the UART; bytes already received stay (the host only sends at the new
        speed after its own switch, which the line judges)."""
        self.baud = baud
        if clear:
            self.port.reset(baud, ISP_BUF)
        else:
            with self.port.cond:
                self.port.baud = baud
        self.log["bauds"].append(baud)

    def reject(self, op, reason, why):
        self.log["rejected"].append("%02X %02X %s" % (op, reason, why))
        sys.stderr.write("vboard isp: %02X refused (%02X): %s\n" % (op, reason, why))
        self.reply(op, reason)

    # -- frames
    def run(self):
        self.set_baud(REPL_BAUD, clear=True)
        # said once the receive buffer is fresh: from here on every byte sent is read
        sys.stderr.write("vboard: reset with BOOT low: ISP mode (board %s)\n" % self.board.wiring)
        reader = SlipReader(self.port)
        while True:
            frame = reader.next()
            if self.stage == "dead":
                continue                  # unknown code runs: nothing answers
            if frame is None or len(frame) < 2:
                continue
            op = frame[0]
            if len(frame) < 16 and op not in FIXED_FRAME_OPS:
                self.reject(op, BAD_LEN, "short frame (%d bytes)" % len(frame))
                continue
            handler = getattr(self, "_%s_%02x" % (self.stage, op), None)
            if handler is None:
                self.reject(op, BAD_CMD, "op %02X unknown in the %s stage" % (op, self.stage))
                continue
            if op in FIXED_FRAME_OPS:
                if handler() == "reboot":
                    return
                continue
            crc, addr, length = struct.unpack_from("<III", frame, 4)
            data = frame[16:]
            if op == 0xD8:
                data = length            # erase: the length field is the erase length
            elif length != len(data):
                self.reject(op, BAD_LEN, "length field %d, %d data bytes" % (length, len(data)))
                continue
            if binascii.crc32(frame[8:]) & 0xFFFFFFFF != crc:
                self.log["crc_errors_detected"] += 1
                self.reject(op, BAD_CRC, "checksum mismatch at 0x%X" % addr)
                continue
            handler(addr, data)

    # ROM stage
    def _rom_c2(self):
        self.reply(0xC2, OK)

    def _rom_c3(self, addr, data):
        if not (SRAM_BASE <= addr and addr + len(data) <= SRAM_BASE + SRAM_SIZE):
            return self.reject(0xC3, BAD_CMD, "memory write outside SRAM at 0x%X" % addr)
        off = addr - SRAM_BASE
        self.sram[off:off + len(data)] = data
        self.sram_written.add((off, len(data)))
        self.reply(0xC3, OK)

    def _rom_c6(self, addr, data):
        if len(data) != 4:
            return self.reject(0xC6, BAD_LEN, "baud payload of %d bytes" % len(data))
        self.set_baud(rom_baud(struct.unpack("<I", data)[0]))   # no reply: kflash reads none

    def _rom_c5(self, addr, data):
        stub = kflash_stub()
        covered = _covered(self.sram_written, len(stub) if stub else 0)
        ok = stub is not None and addr == SRAM_BASE and covered and \
            bytes(self.sram[:len(stub)]) == stub
        self.log["stub"] = bool(ok)
        self.log["stub_size"] = max([o + n for o, n in self.sram_written] or [0])
        if not ok:
            sys.stderr.write("vboard isp: booted code at 0x%X is not kflash's flash stub (%s): "
                             "the CPU runs it and says nothing until reset\n"
                             % (addr, "kflash not installed" if stub is None
                                else "bytes differ"))
            self.stage = "dead"
            return
        self.stage = "stub"
        self.set_baud(REPL_BAUD)     # the stub starts its UART at 115200

    # stub stage
    def _stub_d2(self):
        self.reply(0xD2, OK)

    def _stub_d9(self):
        self.reply(0xD9, OK)         # erases complete at once

    def _stub_d5(self):
        self.log["rebooted"] = True
        # The session is recorded before the reply: kflash exits on it, and whoever started
        # kflash may stop this board (SIGTERM, no finally) and read isp.json at once.
        self.save_log()
        self.reply(0xD5, OK)
        time.sleep(0.01)             # the reply leaves before the chip resets
        return "reboot"

    def _stub_d6(self, addr, data):
        if len(data) != 4:
            return self.reject(0xD6, BAD_LEN, "baud payload of %d bytes" % len(data))
        self.set_baud(struct.unpack("<I", data)[0])              # no reply: kflash reads none

    def _stub_d7(self, addr, data):
        if addr not in (0, 1):
            return self.reject(0xD7, BAD_INIT, "flash chip type %d" % addr)
        self.flash_ready = True
        self.reply(0xD7, OK)

    def _stub_d8(self, addr, length):
        if not self.flash_ready:
            return self.reject(0xD8, BAD_INIT, "erase before flash init (D7)")
        if addr == 0 and length == 0:
            addr, length = 0, fs.FLASH_SIZE
        if addr % SECTOR or length % SECTOR or addr + length > fs.FLASH_SIZE:
            return self.reject(0xD8, BAD_ERASE, "erase 0x%X+%d not 4 KiB aligned / in range"
                               % (addr, length))
        fs.write_flash(self.board.state_dir, addr, b"\xff" * length)
        self.log["erases"].append([addr, length])
        self.reply(0xD8, OK)

    def _stub_d4(self, addr, data):
        if self.board.isp_crc_errors and self.board.isp_rng.random() < self.board.isp_crc_errors:
            self.log["crc_errors_injected"] += 1
            self.reply(0xD4, BAD_CRC)             # as if the frame was corrupted on the wire
            return
        if not self.flash_ready:
            return self.reject(0xD4, BAD_INIT, "write before flash init (D7)")
        if addr % SECTOR:
            return self.reject(0xD4, BAD_WRITE, "write address 0x%X not 4 KiB aligned" % addr)
        if not data or len(data) > MAX_WRITE or addr + len(data) > fs.FLASH_SIZE:
            return self.reject(0xD4, BAD_WRITE, "write 0x%X+%d outside the %d MiB chip or "
                               "larger than 64 KiB" % (addr, len(data), fs.FLASH_SIZE >> 20))
        fs.write_flash(self.board.state_dir, addr, data)
        writes = self.log["writes"]
        if writes and writes[-1][0] + writes[-1][1] == addr:
            writes[-1][1] += len(data)           # contiguous: one entry per file
        else:
            writes.append([addr, len(data)])
        self.reply(0xD4, OK)

    def save_log(self):
        """Append this session to DIR/isp.json {"sessions": [...]} (the last 50 kept), once."""
        if self.log.get("finished"):
            return
        self.log["finished"] = time.time()
        path = os.path.join(self.board.state_dir, "isp.json")
        try:
            with open(path) as f:
                sessions = json.load(f)["sessions"]
        except (OSError, ValueError, KeyError, TypeError):
            sessions = []
        sessions = (sessions + [self.log])[-50:]
        tmp = path + ".tmp"
        try:
            with open(tmp, "w") as f:
                json.dump({"sessions": sessions}, f, indent=1)
            os.replace(tmp, path)
        except OSError:
            pass


def _covered(chunks, size):
    """Whether the written (offset, length) chunks cover [0, size)."""
    end = 0
    for off, n in sorted(chunks):
        if off > end:
            break
        end = max(end, off + n)
    return size > 0 and end >= size


def run(board):
    """The ROM (then the stub) until the stub's reboot command; a reset ends it earlier."""
    isp = Isp(board)
    try:
        isp.run()
    finally:
        isp.save_log()
        sys.stderr.write("vboard: ISP done: %s\n" % json.dumps(
            {k: isp.log[k] for k in ("stub", "writes", "bauds", "crc_errors_injected",
                                     "crc_errors_detected", "rebooted")}))
