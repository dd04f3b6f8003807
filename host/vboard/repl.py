"""MicroPython 1.11's REPLs (lib/utils/pyexec.c, lib/mp-readline) on the board's UART.

Friendly REPL: echo, '\\r' ends a line, Ctrl-A raw mode, Ctrl-B banner, Ctrl-C cancel,
Ctrl-D on an empty line soft reset, Ctrl-E paste mode. Raw REPL: no echo, Ctrl-D runs
the collected code ("OK", stdout, 0x04, traceback, 0x04, ">"), an empty Ctrl-D soft
resets, Ctrl-B leaves, Ctrl-C clears. There is no raw-paste mode in 1.11: Ctrl-E in raw
mode is an ordinary byte of the program.
"""
import codeop

from host.vboard.board import SoftReset

CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E = 1, 2, 3, 4, 5


def _incomplete(source):
    # mp_repl_continue_with_input: a compound statement or open brackets need more lines
    try:
        return codeop.compile_command(source, "<stdin>", "single") is None
    except (SyntaxError, OverflowError, ValueError):
        return False


def _readline(board, line, prompt):
    """mp-readline, reduced to what a serial host uses. Returns 0 on Enter or the control
    character that ended input; edits `line` (a bytearray) in place."""
    board.write(prompt)
    start = len(line)
    while True:
        c = board.port.read_byte()
        if CTRL_A <= c <= CTRL_E and len(line) == start:
            return c
        if c == CTRL_C:
            return c
        if c == 13:
            board.write(b"\r\n")
            return 0
        if c in (8, 127):
            if len(line) > start:
                del line[-1]
                board.write(b"\x08 \x08")
        elif 32 <= c <= 126 or c >= 128:
            line.append(c)
            board.write(bytes([c]))


def friendly_repl(board):
    board.write(board.repl_banner())
    while True:
        line = bytearray()
        ret = _readline(board, line, ">>> ")
        if ret == CTRL_A:
            board.write(b"\r\n")
            board.raw_mode = True
            return
        if ret == CTRL_B:
            board.write(b"\r\n")
            board.write(board.repl_banner())
            continue
        if ret == CTRL_C:
            board.write(b"\r\n")
            continue
        if ret == CTRL_D:
            board.write(b"\r\n")
            raise SoftReset()
        if ret == CTRL_E:
            _paste_mode(board)
            continue
        if not line.strip():
            continue
        cancelled = False
        while _incomplete(line.decode("utf-8", "replace")):
            line += b"\n"
            ret = _readline(board, line, "... ")
            if ret == CTRL_C:
                board.write(b"\r\n")
                cancelled = True
                break
            if ret == CTRL_D:
                break
        if cancelled:
            continue
        board.execute(line.decode("utf-8", "replace"), "<stdin>", "single", friendly=True)


def _paste_mode(board):
    board.write(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
    code = bytearray()
    prev = None
    while True:
        c = board.port.read_byte()
        if c == CTRL_C:
            board.write(b"\r\n")
            return
        if c == CTRL_D:
            board.write(b"\r\n")
            board.execute(code.decode("utf-8", "replace"), "<stdin>", "exec", friendly=True)
            return
        if c == 13 or (c == 10 and prev != 13):   # \r, \n or \r\n end a line
            code.append(10)
            board.write(b"\r\n=== ")
        elif c != 10:
            code.append(c)
            board.write(bytes([c]))
        prev = c


def raw_repl(board):
    board.write(b"raw REPL; CTRL-B to exit\r\n")
    while True:
        code = bytearray()
        board.write(b">")
        while True:
            c = board.port.read_byte()
            if c == CTRL_A:
                return                      # re-enter: prints the raw banner again
            if c == CTRL_B:
                board.write(b"\r\n")
                board.raw_mode = False
                return
            if c == CTRL_C:
                code = bytearray()
            elif c == CTRL_D:
                break
            else:
                code.append(c)
        board.write(b"OK")
        if not code:
            board.write(b"\r\n")
            raise SoftReset()
        _raw_exec(board, code.decode("utf-8", "replace"))


def _raw_exec(board, source):
    # stdout, 0x04, then the traceback (stderr is the same UART), 0x04
    real_print_exception = board.print_exception
    errors = []
    board.print_exception = lambda exc: errors.append(board.format_exception(exc))
    try:
        board.execute(source, "<stdin>", "exec")
    finally:
        board.print_exception = real_print_exception
    board.write(b"\x04")
    if errors:
        board.write(errors[0])
    board.write(b"\x04")
