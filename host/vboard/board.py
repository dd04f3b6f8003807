"""The virtual K210: boot sequence, script execution, Ctrl-C, soft reset.

Board code runs in the main thread of this process with its own builtins: `__import__`
resolves firmware module names to the shims and flat names to files in the board's
filesystem (sys.path '', '/flash', ...), `print`/`open` go to the UART and the board's
filesystem. Nothing in board code can reach host modules.

Ctrl-C: the line's reader thread puts 0x03 into the UART buffer and, while a script runs
with the interrupt char enabled, toggles the pending interrupt as the firmware's UART IRQ
does (`_on_ctrl_c`): raised, SIGUSR1 goes to the main thread, whose handler raises
KeyboardInterrupt there (interrupting sleeps and waits).
"""
import builtins
import gc
import os
import random
import signal
import sys
import threading
import time
import traceback
import types

from host.vboard import dialect, fs, gcheap, image, shims
from host.vboard.uart import DEFAULT_BUF, REPL_BAUD, UartPort

_BOARD = None
BOOT_SAMPLE_DELAY = 0.005   # s after RESET release the ROM reads the BOOT pin (IO16)

# Firmware log lines the board prints now and then while user code runs.
_LOG_LINES = (
    "[MAIXPY]: sensor: frame timeout, retry",
    "[MAIXPY]: dvp: frame sync lost",
    "[MAIXPY]: gc: heap compacted",
    "[MAIXPY]: lcd: flush done",
    "[MAIXPY]: kpu: dma channel busy, wait",
)

def current():
    return _BOARD


class SoftReset(Exception):
    """Raised out of the REPL loop to restart the interpreter (Ctrl-D, machine.soft_reset)."""


class HardReset(Exception):
    """machine.reset(): reboot with the banner, as after power-on."""


class PowerCycle(BaseException):
    """The RESET pin was pulled (DTR/RTS wiring): raised asynchronously in the main thread,
    wherever board code is; never caught by board code's `except Exception`."""


class Trapped(Exception):
    """Raised in a thread other than the main one when firmware code it runs traps (halt)."""


class ResetRequest(SystemExit):
    """What machine.reset()/soft_reset() raise inside board code (a SystemExit, like the
    firmware); `execute` turns it into SoftReset/HardReset once the script has unwound."""

    def __init__(self, hard):
        SystemExit.__init__(self)
        self.hard = hard


class Session:
    """Everything a soft reset throws away: modules, __main__, peripherals, KPU models."""

    def __init__(self):
        self.modules = {}
        self.main = {"__name__": "__main__"}
        self.uarts = {}
        self.models = []           # loaded KPU models (heap accounting, legacy max 5)
        self.kpus = []             # CanMV KPU objects the firmware lists (free_after_ctrl_c)
        self.sensor = None
        self.lcd = None


class Board:
    def __init__(self, state_dir, profile, line, sensor_dir=None, log_rate=0.0, seed=0,
                 wiring="dan", isp_crc_errors=0.0):
        global _BOARD
        _BOARD = self
        fs.mount(state_dir)
        self.state_dir = os.path.abspath(state_dir)
        self.profile = profile
        self.line = line
        self.sensor_dir = sensor_dir
        self.log_rate = log_rate
        self.rng = random.Random(seed)
        self.port = UartPort("UARTHS", line, on_interrupt=self._on_ctrl_c)
        # the GC heap, emptied at every boot; the REPL UART's ring lives in it
        # (machine_uart.c: m_new of read_buf_len + 1 bytes)
        self.heap = gcheap.GcHeap(profile.gc_heap_bytes,
                                  extra=lambda: gcheap.blocks(self.port.capacity + 1))
        if line is not None:
            line.attach(self.port)
        self.main_thread = threading.main_thread().ident
        self.executing = False
        self.friendly_exec = False
        self.interrupt_char = -1
        self.pending_interrupt = False
        self.raw_mode = False
        self.boot_time = time.monotonic()
        self.session = Session()
        # reset wiring: DTR/RTS from the host (host.vboard.modem) drive RESET and BOOT
        self.wiring = wiring
        self.isp_crc_errors = isp_crc_errors
        self.isp_rng = random.Random(seed)
        self.lines = {"dtr": False, "rts": False}
        self.power = threading.Condition()
        self.reset_held = False
        self.halted = False             # the main thread is held in reset (or deciding)
        self.trapped = False            # the CPU trapped (halt()): nothing runs until RESET
        self._kpu_timer = None          # CanMV's KPU free timer after a Ctrl-C (on_ctrl_c)
        self.pending_power = False
        self._next_log = self._schedule_log(time.monotonic())
        self.builtins = self._make_builtins()
        signal.signal(signal.SIGUSR1, self._sigusr1)
        sys.displayhook = self._displayhook     # friendly REPL echoes expression values

    def _displayhook(self, value):
        if value is not None:
            self.print(repr(value))

    # ------------------------------------------------------------------ console
    def write(self, data):
        """Raw bytes to the REPL UART (sys.stdout.write, uart.write on UARTHS)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.maybe_log()
        self.port.write(bytes(data))

    def print(self, *args, sep=" ", end="\n", file=None):
        text = sep.join(str(a) for a in args) + end
        if file is not None and getattr(file, "board", None) is not self:
            file.write(text)
            return
        # MicroPython's print is "cooked": \n goes out as \r\n
        self.write(text.replace("\n", "\r\n"))

    def maybe_log(self):
        """Emit the firmware log lines that fell due, between two writes (as printk does)."""
        if not (self.friendly_exec and self.log_rate > 0):
            return
        now = time.monotonic()
        while now >= self._next_log:
            line = "%s\r\n" % self.rng.choice(_LOG_LINES)
            self.port.write(line.encode("ascii"))
            self._next_log = self._schedule_log(self._next_log)

    def _schedule_log(self, after):
        if self.log_rate <= 0:
            return float("inf")
        return after + self.rng.expovariate(self.log_rate)

    # ------------------------------------------------------------------ Ctrl-C
    def _on_ctrl_c(self, count):
        """`count` 0x03 bytes reached the REPL UART's buffer in one go (reader thread, under
        the port lock). Each, as machine_uart.c (MaixPy-v1 and CanMV: uart_rx_irq) handles
        it: with no exception pending it raises one (mp_keyboard_interrupt; CanMV also
        starts its KPU free timer), with one pending it cancels it (mp_pending_exception =
        NULL). So two Ctrl-Cs that arrive before the script next checks (back to back, or
        during a long C call) interrupt nothing - while CanMV's timer still runs. The
        script's thread is signalled only after all of them, as it would see the state."""
        if not (self.executing and self.interrupt_char == 3):
            return
        raised = False
        for _ in range(count):
            self.pending_interrupt = not self.pending_interrupt
            raised = raised or self.pending_interrupt
        if raised:
            self._start_kpu_timer()
        if self.pending_interrupt:
            signal.pthread_kill(self.main_thread, signal.SIGUSR1)

    def _start_kpu_timer(self):
        """CanMV (kendryte/canmv machine_uart.c: the UART IRQ on the interrupt char) starts
        a one-shot timer; 400 ms after the last Ctrl-C, maixpy_main.c: deinit_kpu_timer_cb
        frees every KPU buffer (kpu_api.free_after_ctrl_c)."""
        if self.profile.api not in ("new", "old"):
            return
        from host.vboard.shims import kpu_api
        if self._kpu_timer is not None:
            self._kpu_timer.cancel()
        session = self.session
        self._kpu_timer = threading.Timer(kpu_api.CTRL_C_FREE_DELAY,
                                          kpu_api.free_after_ctrl_c, (self, session))
        self._kpu_timer.daemon = True
        self._kpu_timer.start()

    def halt(self, why):
        """The CPU traps (a fault in firmware C code): the trap text, then nothing runs
        until RESET. The text is the virtual board's; a real trap handler's dump differs."""
        self.write(("vboard: core 0 trap, %s: halted until reset\r\n" % why).encode())
        self.trapped = True
        if threading.get_ident() == self.main_thread:
            self._trap()
        signal.pthread_kill(self.main_thread, signal.SIGUSR1)
        raise Trapped(why)

    def _trap(self):
        while True:
            try:
                time.sleep(3600)
            except KeyboardInterrupt:    # a trapped CPU ignores Ctrl-C too
                pass

    def _sigusr1(self, signum, frame):
        if self.pending_power:
            self.pending_power = False
            self.trapped = False
            raise PowerCycle()
        if self.trapped:
            self._trap()
        fire = self.pending_interrupt and self.executing
        self.pending_interrupt = False
        if fire:
            raise KeyboardInterrupt()

    # ------------------------------------------------------------------ reset wiring
    def set_lines(self, dtr, rts):
        """Host DTR/RTS changed (line-server thread). RESET asserted halts the CPU wherever it
        is; its release lets the main thread boot (ROM ISP when BOOT is held low)."""
        from host.vboard.modem import WIRING
        reset_line, _boot_line = WIRING[self.wiring]
        with self.power:
            self.lines = {"dtr": bool(dtr), "rts": bool(rts)}
            reset = self.lines[reset_line]
            if reset and not self.reset_held:
                self.reset_held = True
                sys.stderr.write("vboard: RESET asserted: CPU held\n")
                if not self.halted:
                    self.halted = True
                    self.pending_power = True
                    signal.pthread_kill(self.main_thread, signal.SIGUSR1)
            elif not reset and self.reset_held:
                self.reset_held = False
            self.power.notify_all()

    def press_reset(self):
        """The RESET button (or a brown-out; the fault layer's `reset`): the CPU restarts
        wherever it is and, BOOT being sampled as the lines hold it, boots its firmware."""
        with self.power:
            if not self.halted:
                self.halted = True
                self.pending_power = True
                signal.pthread_kill(self.main_thread, signal.SIGUSR1)
            self.power.notify_all()

    def _wait_reset_released(self):
        """Main thread, CPU halted: wait for RESET to be released, then sample BOOT as the
        K210's ROM does shortly after reset. Returns True for ISP mode (BOOT low)."""
        from host.vboard.modem import WIRING
        _reset_line, boot_line = WIRING[self.wiring]
        while True:
            with self.power:
                self.halted = True
                self.pending_power = False
                while self.reset_held:
                    self.power.wait(0.5)
            time.sleep(BOOT_SAMPLE_DELAY)
            with self.power:
                if self.reset_held:
                    continue
                self.halted = False
                self.pending_power = False
                return self.lines[boot_line]

    # ------------------------------------------------------------------ imports
    def _make_builtins(self):
        b = dict(builtins.__dict__)
        for name in ("exit", "quit", "copyright", "credits", "license"):
            b.pop(name, None)
        b["__import__"] = self.import_module
        b["print"] = self.print
        b["open"] = fs.open_file
        b["input"] = self.input
        b["id"] = _board_id
        # board code's own buffers count in the GC heap at MicroPython's sizes
        b["bytearray"] = gcheap.counting_type(bytearray, self.heap, gcheap.bytearray_parts)
        b["bytes"] = gcheap.counting_type(bytes, self.heap, gcheap.bytes_parts)
        b[dialect.ATTR_HOOK] = dialect.attr_hook
        return b

    def import_module(self, name, globals=None, locals=None, fromlist=(), level=0):
        if level:
            raise ImportError("relative import not supported")
        top = name.split(".")[0]
        module = self._load(top)
        for i, part in enumerate(name.split(".")[1:], 1):
            module = self._load(".".join(name.split(".")[:i + 1]))
        return module if fromlist else self._load(top)

    def _load(self, name):
        modules = self.session.modules
        if name in modules:
            return modules[name]
        module = shims.make(name, self)
        if module is None:
            module = self._load_file(name)
        modules[name] = module
        return module

    def sys_path(self):
        return self.session.modules["sys"].path if "sys" in self.session.modules \
            else self.default_sys_path()

    def default_sys_path(self):
        return ["", ".frozen", "/flash/lib"] + ["/" + m for m in reversed(fs.mounts())]

    def _load_file(self, name):
        rel = name.replace(".", "/")
        for entry in self.sys_path():
            base = (entry.rstrip("/") + "/" if entry else "") + rel
            for candidate, is_pkg in ((base + ".py", False), (base + "/__init__.py", True)):
                try:
                    real = fs.resolve(candidate)
                except OSError:
                    break
                if os.path.isfile(real):
                    return self._exec_module(name, candidate, real, is_pkg)
            try:
                if os.path.isfile(fs.resolve(base + ".mpy")):
                    raise ImportError("vboard cannot run %s.mpy (upload the .py)" % base)
            except OSError:
                pass
        raise ImportError("no module named '%s'" % name)

    def _exec_module(self, name, vpath, real, is_pkg):
        with open(real, "rb") as f:
            source = f.read().decode("utf-8")
        module = types.ModuleType(name)
        module.__file__ = vpath
        module.__builtins__ = self.builtins
        if is_pkg:
            module.__path__ = [vpath.rsplit("/", 1)[0]]
        self.session.modules[name] = module
        try:
            # the compiler's output stays in the GC heap while the module is imported
            self.heap.keep(int(len(source) * gcheap.BYTECODE_PER_SOURCE_BYTE))
            exec(dialect.compile_source(source, vpath, "exec"), module.__dict__)
        except BaseException:
            self.session.modules.pop(name, None)
            raise
        return module

    def input(self, prompt=""):
        self.write(prompt)
        line = bytearray()
        while True:
            c = self.port.read_byte()
            if c in (10, 13):
                self.write(b"\r\n")
                return line.decode("utf-8", "replace")
            line.append(c)
            self.write(bytes([c]))

    # ------------------------------------------------------------------ execution
    def execute(self, source, filename, mode="exec", friendly=False):
        """Compile and run board code in __main__; print a traceback like MicroPython.
        Returns 'ok', 'error' or 'exit' (SystemExit)."""
        try:
            try:
                code = dialect.compile_source(source, filename, mode)
            except SyntaxError as exc:
                self.print_exception(exc)
                return "error"
            g = self.session.main
            g["__builtins__"] = self.builtins
            self.interrupt_char = 3
            self.friendly_exec = friendly
            self.executing = True
            try:
                exec(code, g)
            finally:
                self.executing = False
                self.friendly_exec = False
                self.interrupt_char = -1
            return "ok"
        except PowerCycle:
            self.executing = False
            raise
        except ResetRequest as exc:
            raise HardReset() if exc.hard else SoftReset()
        except SystemExit:
            return "exit"
        except BaseException as exc:   # KeyboardInterrupt too: it ends the script, not us
            self.executing = False
            self.print_exception(exc)
            return "error"

    def exec_file(self, vpath):
        try:
            real = fs.resolve(vpath)
        except OSError:
            return None
        if not os.path.isfile(real):
            return None
        with open(real, "rb") as f:
            source = f.read().decode("utf-8", "replace")
        return self.execute(source, vpath, "exec", friendly=True)

    def format_exception(self, exc):
        lines = ["Traceback (most recent call last):"]
        if isinstance(exc, SyntaxError):
            lines.append('  File "%s", line %s' % (exc.filename, exc.lineno))
        else:
            for frame, lineno in traceback.walk_tb(exc.__traceback__):
                fname = frame.f_code.co_filename
                if _is_board_file(fname):
                    lines.append('  File "%s", line %d, in %s'
                                 % (fname, lineno, frame.f_code.co_name))
        msg = str(exc.msg if isinstance(exc, SyntaxError) else exc)
        if isinstance(exc, KeyboardInterrupt) or msg:
            lines.append("%s: %s" % (type(exc).__name__, msg))
        else:
            lines.append(type(exc).__name__)
        return "\r\n".join(lines) + "\r\n"

    def print_exception(self, exc):
        self.write(self.format_exception(exc))

    # ------------------------------------------------------------------ boot
    def run(self):
        """Power on, then boot forever: a soft reset re-runs boot.py; machine.reset reboots.
        RESET from the host's DTR/RTS halts everything; on release the ROM either boots the
        firmware or, with BOOT held low, runs the ISP (host.vboard.isp) until it reboots."""
        hard = True
        isp = False
        while True:
            try:
                try:
                    if isp:
                        isp = False
                        from host.vboard import isp as isp_mod
                        isp_mod.run(self)     # returns after the stub's reboot command
                        hard = True
                        continue
                    self.boot(hard)
                    hard = False
                except SoftReset:
                    self.write(b"MPY: soft reboot\r\n")
                    hard = False
                except HardReset:
                    hard = True
            except PowerCycle:
                isp = self._power_cycle()
                hard = True

    def _power_cycle(self):
        while True:
            try:
                self.session = Session()
                return self._wait_reset_released()
            except PowerCycle:
                continue

    def boot(self, hard):
        self.session = Session()
        self.heap.reset()
        gc.collect()        # the old session's images (and their RAM mappings) go now
        self.port.reset(REPL_BAUD, DEFAULT_BUF)
        fs.chdir("/")
        if hard:
            self.boot_time = time.monotonic()     # ticks start again; a soft reset keeps them
            self.raw_mode = False
            self.write(self.banner())
        # the built-in _boot.py: SD card if mounted, else /flash; boot.py, then main.py
        fs.chdir("/sd" if "sd" in fs.mounts() else "/flash")
        self.exec_file("boot.py")
        if not self.raw_mode:
            self.exec_file("main.py")
        from host.vboard import repl
        while True:
            if self.raw_mode:
                repl.raw_repl(self)
            else:
                repl.friendly_repl(self)

    def banner(self):
        """The boot log (maixpy_main.c: printk lines of MaixPy-v1 / CanMV); the clock and
        flash ID values are those of a Maix Dock."""
        p = self.profile
        tag, gc_tag = p.log_tag, "[%s]" % p.platform
        return ("\r\n[%s] Pll0:freq:832000000\r\n[%s] Pll1:freq:398666666\r\n"
                "[%s] Pll2:freq:45066666\r\n[%s] cpu:freq:416000000\r\n"
                "[%s] kpu:freq:398666666\r\n[%s] Flash:0xc8:0x17\r\n"
                "%s gc heap=0x80300000-0x%08x(%d)\r\n"
                % (tag, tag, tag, tag, tag, tag, gc_tag, 0x80300000 + p.gc_heap_bytes,
                   p.gc_heap_bytes))

    def repl_banner(self):
        # MicroPython's pyexec.c friendly REPL banner with the port's board and tag
        from host.vboard.shims import uos
        return ("MicroPython v%s on %s; %s\r\nType \"help()\" for more information.\r\n"
                % (uos.release_string(self.profile), uos.BUILD_DATE, self.profile.machine))

    def ticks_ms(self):
        return int((time.monotonic() - self.boot_time) * 1000)


def _board_id(obj):
    # id() is an object's address on the board; an Image's is in virtual K210 RAM
    if isinstance(obj, image.Image):
        return obj.obj_addr
    return builtins.id(obj)


def _is_board_file(name):
    # board code is compiled with board paths ("main.py", "/flash/x.py", "<stdin>")
    if name == "<stdin>":
        return True
    return not name.startswith("<") and (not os.path.isabs(name)
                                         or name.startswith(("/flash/", "/sd/")))
