"""`uos` / `os`: the board's filesystems (host.vboard.fs) and uname().

sipeed/MaixPy-v1 (and kendryte/canmv) components/micropython/port/src/standard_lib/uos/
moduos.c: os_module_globals_table over the VFS (SPIFFS /flash, FAT /sd)."""
import collections
import os

from host.vboard import fs
from host.vboard.shims.base import new_module

BUILD_DATE = "2023-03-22"     # the virtual builds' date (the real one is each image's)


def release_string(profile):
    return ".".join(str(v) for v in profile.release)


UName = collections.namedtuple("uname_result",
                               ["sysname", "nodename", "release", "version", "machine"])


def build(board):
    p = board.profile

    def uname():
        # standard_lib/uos/moduos.c: os_uname_info (sysname and nodename are the platform,
        # release MICROPY_VERSION_STRING, version MICROPY_GIT_TAG " on " MICROPY_BUILD_DATE)
        return UName(p.platform, p.platform, release_string(p), "v%s on %s"
                     % (release_string(p), BUILD_DATE), p.machine)

    def ilistdir(path="."):
        # moduos.c -> extmod/vfs.c: mp_vfs_ilistdir (name, type, inode)
        for name in fs.listdir(path):
            mode = fs.stat(fs.normalize(path) + "/" + name)[0]
            yield (name, mode & 0o170000, 0)

    def statvfs(path):
        # extmod/vfs.c: mp_vfs_statvfs; /flash is a 3 MiB SPIFFS of 4 KiB blocks on the board
        # (the vboard counts whole blocks per file; SPIFFS' own overhead is not modelled)
        total = 768
        used = 0
        for root, _dirs, files in os.walk(fs.resolve(path)):
            used += sum((os.path.getsize(os.path.join(root, f)) + 4095) // 4096 for f in files)
        free = max(0, total - used)
        return (4096, 4096, total, free, free, 0, 0, 0, 0, 255)

    return new_module("uos", listdir=fs.listdir, ilistdir=ilistdir, remove=fs.remove,
                      unlink=fs.remove, rename=fs.rename, stat=fs.stat, getcwd=fs.getcwd,
                      chdir=fs.chdir, mkdir=fs.mkdir, rmdir=fs.rmdir, uname=uname,
                      statvfs=statvfs, sync=lambda: None, sep="/")
