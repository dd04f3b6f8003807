"""The virtual K210 as a host sees it: real board process, real pty, pyserial.

Board code runs in `python -m host.vboard`; this process only talks to it over the line.
"""
import contextlib
import io
import os
import time

import numpy as np
import pytest
import serial
from PIL import Image as PILImage

from host.vboard import image as vimage
from host.rawrepl import RawRepl
from host.vboard.launcher import provision, start_board

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.timeout(120)


@contextlib.contextmanager
def _camera_board(tmp_path, size, color):
    """(state dir, raw REPL) of a board whose camera sees one picture of `size` in `color`."""
    cam = tmp_path / "cam"
    cam.mkdir()
    PILImage.new("RGB", size, color).save(str(cam / "a.png"))
    state = str(tmp_path / "state")
    with start_board(state, sensor_dir=str(cam), log_rate=0) as handle:
        with serial.Serial(handle.port, 115200, timeout=0.2) as ser:
            repl = RawRepl(ser)
            repl.enter()
            yield state, repl


def _read_for(ser, seconds):
    data = bytearray()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data += ser.read(4096)
    return bytes(data)


def test_boots_and_runs_scripts_from_its_flash(tmp_path):
    state = str(tmp_path / "state")
    provision(state, files={
        "boot.py": b"import uos\nwith open('booted.txt', 'w') as f:\n    f.write(uos.getcwd())\n",
        "helper.py": b"def answer():\n    return 42\n",
        "main.py": b"import helper, sys\nprint('main', helper.answer(), sys.implementation.name)\n"
                   b"with open('/flash/main.txt', 'w') as f:\n    f.write(str(helper.answer()))\n",
    })
    with start_board(state, log_rate=0) as handle:
        with serial.Serial(handle.port, 115200, timeout=0.2) as ser:
            repl = RawRepl(ser)
            repl.enter()
            assert repl.exec("print(open('booted.txt').read(), open('main.txt').read())") \
                == "/flash 42\r\n"
            # uos/os describe the firmware, not the host
            out = repl.exec("import os, sys\nprint(os.uname().machine, sys.implementation.version)")
            # (the default profile is CanMV: its board name and its own build version)
            assert out == "CanMV_Board with kendryte-k210 (1, 0, 5)\r\n"
    with open(os.path.join(state, "flash", "main.txt")) as f:
        assert f.read() == "42"
    assert not os.path.exists(os.path.join(state, "port.json")), "cleaned up on stop"


def test_raw_repl_round_trip_and_files_persist_across_restart(tmp_path):
    state = str(tmp_path / "state")
    with start_board(state, log_rate=0) as handle:
        with serial.Serial(handle.port, 115200, timeout=0.2) as ser:
            repl = RawRepl(ser)
            repl.enter()
            out, err = repl.exec_raw("print('hi')\nraise ValueError('bad')")
            assert out == b"hi\r\n"
            assert err.startswith(b"Traceback (most recent call last):\r\n")
            assert err.endswith(b"ValueError: bad\r\n")
            repl.exec("f = open('/flash/kept.txt', 'wb')\nf.write(b'persisted')\nf.close()")
            # MicroPython 1.11 has no raw-paste mode: Ctrl-E is just a byte of the program
            ser.write(b"\x05")
            ser.write(b"A")
            assert _read_for(ser, 0.3) == b""
            ser.write(b"\x03")      # clears the line in raw mode
            assert repl.exec("print(1)") == "1\r\n"
    with start_board(state, log_rate=0) as handle:
        with serial.Serial(handle.port, 115200, timeout=0.2) as ser:
            repl = RawRepl(ser)
            repl.enter()
            assert repl.exec("import uos\nprint(uos.listdir('/flash'), open('kept.txt').read())") \
                == "['kept.txt'] persisted\r\n"


def test_soft_reset_reruns_boot_py(tmp_path):
    state = str(tmp_path / "state")
    provision(state, files={"boot.py": b"print('BOOT.PY RAN')\n"})
    with start_board(state, log_rate=0) as handle:
        with serial.Serial(handle.port, 115200, timeout=0.2) as ser:
            # an empty Ctrl-D in the friendly REPL (read once the boot reaches it)
            ser.write(b"\x04")
            repl = RawRepl(ser)
            repl.read_until(b"MPY: soft reboot\r\n")
            assert b"BOOT.PY RAN\r\n" in repl.read_until(b">>> ")


def test_ctrl_c_raises_keyboard_interrupt_unless_disabled(vboard_repl):
    handle, ser, repl = vboard_repl
    ser.write(b"import time\nprint('RUNNING')\nwhile True:\n    time.sleep_ms(5)\n\x04")
    repl.read_until(b"OKRUNNING\r\n")
    ser.write(b"\x03")
    out = repl.read_until(b"\x04")
    err = repl.read_until(b"\x04")
    repl.read_until(b">")
    assert out == b"\x04"
    assert b"KeyboardInterrupt" in err

    # with kbd_intr(-1), 0x03 is data for the script
    ser.write(b"import micropython, machine\nmicropython.kbd_intr(-1)\n"
              b"u = machine.UART.repl_uart()\nprint('READY')\nd = None\n"
              b"while not d:\n    d = u.read(1)\nprint(d)\n\x04")
    repl.read_until(b"READY\r\n")
    ser.write(b"\x03")
    out = repl.read_until(b"\x04")
    err = repl.read_until(b"\x04")
    repl.read_until(b">")
    assert out == b"b'\\x03'\r\n\x04" and err == b"\x04"


def test_ctrl_c_stays_in_the_ring_and_a_second_one_cancels_the_first(vboard_repl):
    """machine_uart.c (MaixPy-v1, CanMV): the RX IRQ stores 0x03 in the ring, then raises a
    KeyboardInterrupt if none is pending, else cancels the pending one. Two Ctrl-Cs back to
    back (one chunk on the line: the script cannot check in between) interrupt nothing."""
    handle, ser, repl = vboard_repl
    ser.write(b"import time, machine\nu = machine.UART.repl_uart()\nn = 0\ntry:\n"
              b"    while True:\n        n += 1\n        if n % 10 == 0:\n"
              b"            print('TICK', n // 10)\n        time.sleep_ms(5)\n"
              b"except KeyboardInterrupt:\n    print('CAUGHT', u.read())\n\x04")
    repl.read_until(b"TICK 1\r\n")
    ser.write(b"\x03\x03")
    seen = repl.read_until(b"\r\n", timeout=10)   # the script runs on: ticks go on
    while not seen.startswith(b"TICK"):
        seen = repl.read_until(b"\r\n", timeout=10)
    ticks_after = int(seen.split()[1])
    for _ in range(3):                  # well past the double Ctrl-C: still ticking
        seen = repl.read_until(b"\r\n", timeout=10)
        assert seen.startswith(b"TICK") and int(seen.split()[1]) > ticks_after, seen
    ser.write(b"\x03")
    out = repl.read_until(b"\x04")
    err = repl.read_until(b"\x04")
    repl.read_until(b">")
    # the one Ctrl-C interrupted; it and the two before it are still in the ring
    assert out.endswith(b"CAUGHT b'\\x03\\x03\\x03'\r\n\x04") and err == b"\x04", (out, err)


def test_uart_receive_buffer_drops_overflow(vboard_repl):
    handle, ser, repl = vboard_repl
    ser.write(b"import micropython, machine, time\nmicropython.kbd_intr(-1)\n"
              b"u = machine.UART.repl_uart()\n"
              b"u.init(115200, 8, None, 1, timeout_char=50, read_buf_len=512)\n"
              b"print('READY')\nt = time.ticks_ms()\n"
              b"while u.any() < 512 and time.ticks_diff(time.ticks_ms(), t) < 20000:\n"
              b"    time.sleep_ms(5)\n"
              # the ring is full: the rest of the 2000 bytes (0.13 s of line) is dropped
              b"time.sleep(0.8)\nd = u.read()\n"
              b"print(len(d), d[:3], d[-3:], u.any())\n\x04")
    repl.read_until(b"READY\r\n")
    payload = b"".join(b"%04d" % i for i in range(500))      # 2000 bytes, 4x the buffer
    ser.write(payload)
    out = repl.read_until(b"\x04")
    repl.read_until(b"\x04>")
    assert out == ("512 %r %r 0\r\n\x04" % (payload[:3], payload[509:512])).encode()


def test_uart_is_paced_at_the_configured_baud_and_soft_reset_restores_115200(vboard_repl):
    handle, ser, repl = vboard_repl
    n = 480                         # 0.5 s each way at 9600 baud (960 bytes/s)
    ser.write(b"import micropython, machine, time\nmicropython.kbd_intr(-1)\n"
              b"u = machine.UART.repl_uart()\nprint('READY')\ntime.sleep(0.5)\n"
              b"u.init(9600, 8, None, 1, timeout_char=300, read_buf_len=4096)\n"
              b"t0 = time.ticks_ms()\nu.write(b'x' * %d)\n"
              b"d = u.read(%d)\nt1 = time.ticks_ms()\n"
              b"print(len(d), time.ticks_diff(t1, t0))\n\x04" % (n, n))
    repl.read_until(b"READY\r\n")
    ser.baudrate = 9600             # the host follows the board's baud change
    got = bytearray()
    while len(got) < n:
        chunk = ser.read(n - len(got))
        if chunk and not got:
            t_first = time.monotonic()
        got += chunk
    t_last = time.monotonic()
    assert bytes(got) == b"x" * n
    assert t_last - t_first >= 0.8 * (n - 48) / 960.0
    t_send = time.monotonic()
    ser.write(b"y" * n)
    out = repl.read_until(b"\x04", timeout=10)
    size, board_ms = out[:-1].split()
    assert int(size) == n
    # board total: its own 0.5 s of sending plus our bytes arriving at line rate
    assert int(board_ms) >= 0.8 * 2 * n / 960.0 * 1000
    assert time.monotonic() - t_send >= 0.8 * n / 960.0
    repl.read_until(b"\x04>")

    # soft reset: the REPL UART is back at 115200; a host still at 9600 reads noise
    ser.write(b"\x04")
    repl.read_until(b"OK\r\n")
    ser.baudrate = 115200
    repl.enter()                # retries until the rebooted REPL answers at 115200
    assert repl.exec("print('back')") == "back\r\n"


def test_jpeg_from_bytes_and_image_rules(vboard_repl):
    handle, ser, repl = vboard_repl
    buf = io.BytesIO()
    PILImage.new("RGB", (24, 16), (200, 40, 90)).save(buf, "JPEG", quality=95)
    provision(handle.state_dir, files={"red.jpg": buf.getvalue(), "red.bin": b"BM" + bytes(64)})
    out = repl.exec(
        "import image\n"
        "img = image.Image(open('/flash/red.jpg', 'rb').read(), from_bytes=True)\n"
        "print(img.width(), img.height(), img.get_pixel(12, 8))\n"
        "try:\n    image.Image(open('/flash/red.bin', 'rb').read(), from_bytes=True)\n"
        "except ValueError:\n    print('not jpeg')\n"
        "import machine\ntry:\n    machine.UART.repl_uart().readinto(img)\n"
        "except TypeError:\n    print('read-only')\n")
    lines = out.split("\r\n")
    w, h, rest = lines[0].split(" ", 2)
    assert (w, h) == ("24", "16")
    r, g, b = (int(v) for v in rest.strip("()").split(","))
    assert abs(r - 200) <= 10 and abs(g - 40) <= 10 and abs(b - 90) <= 10
    assert lines[1:3] == ["not jpeg", "read-only"]


def test_device_dialect_is_enforced(vboard_repl):
    handle, ser, repl = vboard_repl
    _, err = repl.exec_raw("x = 1\nprint(f'{x}')")
    assert b"SyntaxError" in err
    _, err = repl.exec_raw("b'ab'.hex()")
    assert b"AttributeError" in err
    _, err = repl.exec_raw("int.from_bytes(b'ab', byteorder='big')")
    assert b"TypeError" in err
    assert repl.exec("print(int.from_bytes(b'\\x01\\x02', 'big'))") == "258\r\n"
    _, err = repl.exec_raw("import tensorflow")
    assert b"ImportError: no module named 'tensorflow'" in err


def test_pix_to_ai_expands_every_level_with_the_firmware_rule():
    # the image module is pure Python + numpy: exact check of all 32/64 levels in-process
    img = vimage.Image(size=(64, 1))
    for v in range(64):
        img.set_pixel(v, 0, ((v % 32) << 11) | (v << 5) | (31 - v % 32))
    img.pix_to_ai()
    planes = np.frombuffer(img.ai_data(), dtype=np.uint8).reshape(3, 64)
    for v in range(64):
        assert planes[0, v] == int(round((v % 32) * 255 / 31.0))
        assert planes[1, v] == int(round(v * 255 / 63.0))
        assert planes[2, v] == int(round((31 - v % 32) * 255 / 31.0))
    # RGB565 is big-endian in the image's memory
    assert img.to_bytes()[:2] == bytes([0x00, 0x1F])


def test_same_uart_over_tcp_and_status_file(tmp_path):
    state = str(tmp_path / "state")
    link = str(tmp_path / "ttyK210")
    with start_board(state, tcp_port=0, link=link, log_rate=0) as handle:
        assert handle.url.startswith("socket://127.0.0.1:")
        assert os.path.realpath(link) == os.path.realpath(handle.port)
        with open(os.path.join(state, "port.json")) as f:
            status = f.read()
        assert handle.port in status and '"profile": "canmv-v5"' in status
        with serial.serial_for_url(handle.url, timeout=0.2) as ser:
            repl = RawRepl(ser)
            repl.enter()
            assert repl.exec("print(6 * 7)") == "42\r\n"
    assert not os.path.lexists(link)


def test_camera_from_sensor_dir_and_lcd_frames(tmp_path):
    with _camera_board(tmp_path, (400, 300), (0, 128, 255)) as (state, repl):
        out = repl.exec(
            "import sensor, lcd\nsensor.reset()\nsensor.set_pixformat(sensor.RGB565)\n"
            "sensor.set_framesize(sensor.QVGA)\nsensor.set_windowing((224, 224))\n"
            "sensor.skip_frames(time=100)\nimg = sensor.snapshot()\n"
            "print(img.width(), img.height(), img.get_pixel(100, 100))\n"
            "lcd.init()\nimg.draw_rectangle(10, 10, 50, 50, color=(255, 0, 0))\n"
            "lcd.display(img)\nlcd.draw_string(0, 0, 'hi', lcd.RED, lcd.BLACK)\n")
    assert out.endswith("224 224 (0, 130, 255)\r\n")     # 128 -> G6 32 -> 130
    frame = PILImage.open(os.path.join(state, "lcd", "0000.png"))
    assert frame.size == (224, 224) and frame.getpixel((10, 10)) == (255, 0, 0)
    assert os.path.exists(os.path.join(state, "lcd", "0001.png"))


def test_grayscale_image_in_place_and_its_one_plane():
    """to_grayscale() in place (py_image_to_grayscale, copy=False): the RGB565 buffer's first
    w*h bytes become the luminance, bpp 1; pix_to_ai() of a GRAYSCALE image copies them
    (py_image_pix_to_ai), w*h bytes, no row padding; slices store and load ints."""
    img = vimage.Image(size=(5, 2))
    addr = img.addr
    img.set_pixel(0, 0, (255, 255, 255))
    img.set_pixel(1, 0, (0, 255, 0))
    gray = img.to_grayscale()
    # format(): sensor.GRAYSCALE (4), as py_image_format answers
    assert gray.format() == 4 and gray.addr == addr and gray.size() == 10
    assert gray.get_pixel(0, 0) == 255 and gray.get_pixel(1, 0) == 149   # int(0.587 * 255)
    gray[2:4] = [7, 9]
    assert gray[0:5] == [255, 149, 7, 9, 0]
    gray.pix_to_ai()
    assert gray.ai_data() == gray.to_bytes() and gray._ai_alloc_bytes() == 10


def test_grayscale_camera_frames(tmp_path):
    """sensor.set_pixformat(sensor.GRAYSCALE): frames of w*h bytes with their KPU input (the
    luminance of the RGB565 frame the camera would give)."""
    with _camera_board(tmp_path, (320, 240), (0, 128, 255)) as (_, repl):
        out = repl.exec(
            "import sensor\nsensor.reset()\nsensor.set_pixformat(sensor.GRAYSCALE)\n"
            "sensor.set_framesize(sensor.QVGA)\nsensor.set_windowing((32, 24))\n"
            "img = sensor.snapshot()\n"
            "print(img.width(), img.height(), img.size(), img.get_pixel(3, 3))\n")
    # RGB565 (0, 130, 255) -> int(0.587 * 130 + 0.114 * 255) = 105
    assert out.endswith("32 24 768 105\r\n")


def test_board_float32_arithmetic_is_the_hosts(vboard_repl):
    """device/decoders.py on the virtual board decodes a tensor as the host does, bit for bit:
    these logits' softmax needs libm's expf (exp in double rounded once is 1 ulp off), which
    the board's float32 emulation must use as the host's does."""
    from device import decoders
    handle, ser, repl = vboard_repl
    logits = [-4.545128345489502, 0.9792670607566833, 11.327210426330566,
              -0.7475726008415222, -5.144968509674072, -4.918192386627197]
    params = {"classes": 6, "softmax": True, "top_k": 3, "threshold": None}
    for name in ("decoders", "label_decoders"):        # float32: the board's silicon
        with open(os.path.join(REPO, "device", name + ".py"), "rb") as f:
            repl.exec("f = open('/flash/%s.py', 'wb')\nf.write(%r)\nf.close()" % (name, f.read()))
    out = repl.exec("import decoders\nprint(repr(decoders.decode('classify', %r, (6, 1, 1), %r)))"
                    % (logits, params))
    assert eval(out) == decoders.decode("classify", logits, (6, 1, 1), params)
