"""`sys` as MicroPython 1.11 on the K210 has it (py/modsys.c: mp_module_sys_globals_table
with the port's mpconfigport.h); stdin/stdout/stderr are the REPL UART."""
import collections

from host.vboard.shims.base import new_module

# MicroPython 1.11 py/modsys.c on these ports: (name, version), version being the firmware's
# build version (mpconfigport.h redefines MICROPY_VERSION_*)
Implementation = collections.namedtuple("implementation", ["name", "version"])


class _Stdio:
    """sys.stdout / sys.stderr / sys.stdin of the board: the REPL UART."""

    def __init__(self, board):
        self.board = board
        self.buffer = self

    def write(self, data):
        self.board.write(data)
        return len(data)

    def read(self, n=1):
        out = bytearray()
        while len(out) < n:
            out.append(self.board.port.read_byte())
        return out.decode("utf-8", "replace")

    def readline(self):
        out = bytearray()
        while not out.endswith(b"\n"):
            out.append(self.board.port.read_byte())
        return out.decode("utf-8", "replace")

    def flush(self):
        pass


def build(board):
    """A fresh `sys` module for one boot."""
    m = new_module("sys")
    m.implementation = Implementation("micropython", tuple(board.profile.release))
    m.version = "3.4.0"
    m.version_info = (3, 4, 0)
    m.platform = board.profile.platform       # MICROPY_PY_SYS_PLATFORM
    m.byteorder = "little"
    m.maxsize = 2 ** 63 - 1                   # 64-bit RISC-V: mp_int_t is 64 bits
    m.argv = []
    m.path = board.default_sys_path()
    m.modules = board.session.modules
    stdio = _Stdio(board)
    m.stdout = m.stderr = m.stdin = stdio

    def exit(code=0):
        # py/modsys.c: mp_sys_exit
        raise SystemExit(code)

    def print_exception(exc, file=None):
        # py/modsys.c: mp_sys_print_exception
        text = board.format_exception(exc)
        (file or stdio).write(text if file is None else text.replace("\r\n", "\n"))

    m.exit = exit
    m.print_exception = print_exception
    return m
