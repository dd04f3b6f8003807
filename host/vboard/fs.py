"""The board's filesystems and flash chip, kept in the state directory.

`/flash` (SPIFFS on the board) is DIR/flash/, `/sd` is DIR/sd/ when that folder exists
(a "mounted card"), the 16 MiB SPI flash chip is DIR/flash.bin. Paths in scripts are
board paths, resolved against the board's own current directory, never the process's.
"""
import errno
import os

FLASH_SIZE = 16 * 1024 * 1024

_state = {"root": None, "cwd": "/"}


def mount(state_dir):
    root = os.path.abspath(state_dir)
    os.makedirs(os.path.join(root, "flash"), exist_ok=True)
    _state["root"] = root
    _state["cwd"] = "/"


def state_dir():
    return _state["root"]


def mounts():
    names = ["flash"]
    if os.path.isdir(os.path.join(_state["root"], "sd")):
        names.append("sd")
    return names


def _oserror(code, path=None):
    # MicroPython prints `OSError: [Errno 2] ENOENT`
    return OSError(code, errno.errorcode.get(code, str(code)))


def normalize(path):
    path = str(path)
    if not path.startswith("/"):
        path = _state["cwd"].rstrip("/") + "/" + path
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return "/" + "/".join(parts)


def resolve(path, for_write=False):
    """Board path -> host path inside the state dir; OSError ENOENT outside the mounts."""
    vpath = normalize(path)
    parts = vpath.strip("/").split("/")
    if not parts[0] or parts[0] not in mounts():
        raise _oserror(errno.ENOENT)
    return os.path.join(_state["root"], *parts)


def getcwd():
    return _state["cwd"]


def chdir(path):
    vpath = normalize(path)
    if vpath != "/" and not os.path.isdir(resolve(vpath)):
        raise _oserror(errno.ENOENT)
    _state["cwd"] = vpath


def listdir(path=None):
    vpath = normalize("." if path is None else path)
    if vpath == "/":
        return mounts()
    real = resolve(vpath)
    if not os.path.isdir(real):
        raise _oserror(errno.ENOENT)
    return sorted(n for n in os.listdir(real) if not n.startswith(".tmp-"))


def stat(path):
    vpath = normalize(path)
    if vpath == "/":
        return (0o040000, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    try:
        st = os.stat(resolve(vpath))
    except FileNotFoundError:
        raise _oserror(errno.ENOENT)
    mode = 0o040000 if os.path.isdir(resolve(vpath)) else 0o100000
    size = 0 if mode == 0o040000 else st.st_size
    t = int(st.st_mtime)
    return (mode, 0, 0, 0, 0, 0, size, t, t, t)


def _wrap(fn, *paths):
    try:
        return fn(*[resolve(p) for p in paths])
    except FileNotFoundError:
        raise _oserror(errno.ENOENT)
    except FileExistsError:
        raise _oserror(errno.EEXIST)
    except IsADirectoryError:
        raise _oserror(errno.EISDIR)
    except OSError as exc:
        raise _oserror(exc.errno or errno.EIO)


def remove(path):
    _wrap(os.remove, path)


def rename(old, new):
    _wrap(os.replace, old, new)


def mkdir(path):
    _wrap(os.mkdir, path)


def rmdir(path):
    _wrap(os.rmdir, path)


def open_file(path, mode="r", *args, **kwargs):
    real = resolve(path)
    try:
        return open(real, mode, *args, **kwargs)
    except FileNotFoundError:
        raise _oserror(errno.ENOENT)
    except IsADirectoryError:
        raise _oserror(errno.EISDIR)


# -- the SPI flash chip --
def flash_path(root=None):
    return os.path.join(root or _state["root"], "flash.bin")


def ensure_flash(root=None):
    """Create the flash image on first use: erased NOR flash reads 0xFF."""
    path = flash_path(root)
    if not os.path.exists(path):
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            block = b"\xff" * (1024 * 1024)
            for _ in range(FLASH_SIZE // len(block)):
                f.write(block)
        os.replace(tmp, path)
    return path


def read_flash(offset, size):
    if offset < 0 or size < 0 or offset + size > FLASH_SIZE:
        raise ValueError("flash read out of range: 0x%x + %d" % (offset, size))
    with open(ensure_flash(), "rb") as f:
        f.seek(offset)
        return f.read(size)


def write_flash(root, offset, data):
    """Host-side helper (provisioning, a fake flasher): program bytes at an address."""
    if offset < 0 or offset + len(data) > FLASH_SIZE:
        raise ValueError("flash write out of range: 0x%x + %d" % (offset, len(data)))
    with open(ensure_flash(root), "r+b") as f:
        f.seek(offset)
        f.write(data)
