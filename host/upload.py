"""Verified file uploads and board-side checksums through the raw REPL (host/rawrepl.py).

A file goes to `<target>.part` in base64 chunks; the board then reports the size and
`ubinascii.crc32` of what it holds, and only when both equal the host's does the file replace
the target (rename). An upload that is interrupted leaves the previous target untouched (and a
`.part` the next upload truncates). A target that already has the right size and CRC is not
sent again.

Bytes can be lost on the way (a REPL UART ring that overflows, a noisy cable): a block whose
code the board cannot run (a base64 line cut short: "Incorrect padding", a SyntaxError) is sent
again at its own offset (`_kf.seek`, which SPIFFS and FAT files support: MaixPy-v1
vfs_spiffs_file.c), and a file whose size or CRC does not verify is uploaded again, each a few
times, before the upload fails.

Board-side helpers (MicroPython 1.11 dialect) are defined once per REPL session: `_kst(path)`
-> (size, crc32) or (-1, 0); `_kfl(address, n)` -> crc32 of n bytes of the SPI flash read with
`utils.flash_read` of `maix` (CanMV) or `Maix` (MaixPy-v1) (None when neither has it).
"""
import binascii
import time

from host.errors import UserError
from host.rawrepl import ExecError, ReplError

CHUNK = 3072                 # raw bytes per base64 line (4096 characters)
LINES_PER_EXEC = 2           # ~8 KB of code per raw-REPL exec
BLOCK_ATTEMPTS = 3           # sends of one block whose code the board could not run
FILE_ATTEMPTS = 3            # uploads of one file that did not verify
FLASH_BLOCK = 4096

HELPERS = """\
import ubinascii, uos, gc
def _kst(p):
    c = 0
    n = 0
    try:
        f = open(p, 'rb')
    except OSError:
        return (-1, 0)
    while True:
        b = f.read(4096)
        if not b:
            break
        c = ubinascii.crc32(b, c)
        n += len(b)
    f.close()
    return (n, c & 0xffffffff)
def _kfl(a, n):
    rd = None
    for m in ('maix', 'Maix'):
        try:
            rd = __import__(m).utils.flash_read
            break
        except (ImportError, AttributeError):
            pass
    if rd is None:
        return None
    c = 0
    o = 0
    while o < n:
        k = min(4096, n - o)
        c = ubinascii.crc32(rd(a + o, k), c)
        o += k
    return c & 0xffffffff
def _kw(s):
    _kf.write(ubinascii.a2b_base64(s))
def _kmv(t, d):
    try:
        uos.rename(t, d)
    except OSError:
        uos.remove(d)
        uos.rename(t, d)
"""


def crc32(data):
    return binascii.crc32(data) & 0xFFFFFFFF


class Uploader(object):
    """Uploads and checksums over one raw REPL. `name` is the port (for messages)."""

    def __init__(self, repl, name):
        self.repl = repl
        self.name = name
        self.ready = False
        self.bytes_sent = 0          # payload bytes uploaded (skipped files excluded)
        self.seconds = 0.0
        self.resent_blocks = 0       # blocks sent again after the board could not run them
        self.resent_files = 0        # files uploaded again after they did not verify

    def _exec(self, code, timeout=10.0, what="the board", attempts=1):
        """Run code on the board; code the board could not run is sent up to `attempts` times
        (only for code that is safe to run twice)."""
        for attempt in range(1, attempts + 1):
            try:
                return self.repl.exec(code, timeout)
            except ExecError as exc:
                if attempt == attempts:
                    raise UserError("%s on %s failed: %s" % (what, self.name, exc))
                self.resent_blocks += 1
            except ReplError as exc:
                raise UserError("the board on %s stopped answering (%s): %s; the files it had "
                                "are intact, reset the board and run the flash again"
                                % (self.name, what, exc))

    def setup(self):
        if not self.ready:
            self._exec(HELPERS, what="installing the upload helpers")
            self.ready = True

    def stat(self, path):
        """(size, crc32) of a board file, (-1, 0) if it does not exist."""
        self.setup()
        out = self._exec("print(_kst(%r))" % path, timeout=30.0, what="checking %s" % path)
        return _pair(out, path)

    def flash_crc(self, address, size):
        """crc32 of `size` bytes of the board's SPI flash at `address`, or None when the
        firmware cannot read its flash from Python."""
        self.setup()
        out = self._exec("print(_kfl(%d, %d))" % (address, size), timeout=60.0 + size / 20000.0,
                         what="reading the flash at 0x%X" % address).strip()
        if out == "None":
            return None
        try:
            return int(out)
        except ValueError:
            raise UserError("reading the flash of the board on %s gave %r" % (self.name, out[:80]))

    def upload(self, path, data, progress=None):
        """Put `data` at board path `path`, verified; returns 'unchanged' or 'written'."""
        self.setup()
        want = (len(data), crc32(data))
        if self.stat(path) == want:
            if progress is not None:
                progress(len(data))
            return "unchanged"
        t0 = time.monotonic()
        part = path + ".part"
        for attempt in range(1, FILE_ATTEMPTS + 1):
            got = self._send(part, data, progress if attempt == 1 else None)
            if got == want:
                break
            self._exec("uos.remove(%r)" % part, what="removing %s" % part)
            if attempt == FILE_ATTEMPTS:
                raise UserError("upload of %s to the board on %s did not verify %d times (board "
                                "has %d bytes, crc32 %08x; sent %d bytes, crc32 %08x): the "
                                "previous file is intact; check the cable and retry"
                                % (path, self.name, attempt, got[0], got[1], want[0], want[1]))
            self.resent_files += 1
        self._exec("_kmv(%r, %r)" % (part, path), what="renaming %s" % part)
        self.seconds += time.monotonic() - t0
        return "written"

    def _send(self, part, data, progress):
        """Write `data` to board file `part`; returns its (size, crc32) as the board reads it."""
        self._exec("_kf = open(%r, 'wb')" % part, what="opening %s" % part)
        step = CHUNK * LINES_PER_EXEC
        for i in range(0, len(data), step):
            block = data[i:i + step]
            lines = ["_kf.seek(%d)" % i] + [
                "_kw(b'%s')" % binascii.b2a_base64(block[j:j + CHUNK]).decode().strip()
                for j in range(0, len(block), CHUNK)]
            # the block seeks to its own offset first, so running it again rewrites it
            self._exec("\n".join(lines), timeout=20.0, what="writing %s" % part,
                       attempts=BLOCK_ATTEMPTS)
            self.bytes_sent += len(block)
            if progress is not None:
                progress(len(block))
        self._exec("_kf.close()\ndel _kf", what="closing %s" % part)
        return self.stat(part)

    def gc_collect(self):
        self._exec("gc.collect()", what="gc")


def _pair(out, path):
    text = out.strip().strip("()").replace(" ", "")
    try:
        size, crc = (int(v) for v in text.split(","))
    except ValueError:
        raise UserError("the board answered %r when asked for the size and CRC of %s"
                        % (out[:80], path))
    return size, crc
