"""The .kfpkg that kflash writes: a zip of `flash-list.json` plus the binaries.

kflash 1.1.6 has no option to write a raw file at an address; a .kfpkg is the only way. It
rewrites `"address": (.*),` with a regex before parsing the JSON, so every address must be a
bare decimal number alone on its line, followed by a comma (a quoted "0x300000" or one-line
JSON breaks it). `sha256Prefix: true` (firmware images) makes kflash write
`flag | u32 len | payload | sha256(all before)`; false writes the bytes as they are.
"""
import hashlib
import json
import re
import struct
import zipfile

from host.errors import UserError
from host.firmware import FLASH_SECTOR, FLASH_SIZE

FIRMWARE_HEADER = 5          # flag byte + u32 length
FIRMWARE_TRAILER = 32        # sha256


class Entry(object):
    """One binary of the package: `name` inside the zip, `address`, `data`, `firmware`
    (sha256Prefix: kflash adds the firmware header and trailer)."""

    def __init__(self, name, address, data, firmware=False):
        self.name = name
        self.address = address
        self.data = data
        self.firmware = firmware

    def image(self, io_mode="dio"):
        """The bytes that end up in flash at `address` (kflash's flash_firmware)."""
        if not self.firmware:
            return self.data
        flag = 0x02 if io_mode == "dio" else 0x00        # no AES; DIO bit as kflash sets it
        body = bytes([flag]) + struct.pack("<I", len(self.data)) + self.data
        return body + hashlib.sha256(body).digest()

    @property
    def flash_size(self):
        return len(self.data) + (FIRMWARE_HEADER + FIRMWARE_TRAILER if self.firmware else 0)


def flash_list(entries):
    """flash-list.json text in the only layout kflash's address regex accepts."""
    items = []
    for e in entries:
        items.append('    {\n      "address": %d,\n      "bin": %s,\n      "sha256Prefix": %s\n'
                     '    }' % (e.address, json.dumps(e.name), "true" if e.firmware else "false"))
    return '{\n  "version": "0.1.0",\n  "files": [\n%s\n  ]\n}\n' % ",\n".join(items)


def parse_like_kflash(text):
    """What kflash 1.1.6 makes of a flash-list.json: [(address, bin, sha256Prefix)]."""
    quoted = re.sub(r'"address": (.*),', r'"address": "\1",', text)
    files = json.loads(quoted)["files"]
    return [(int(f["address"], 0), f["bin"], f["sha256Prefix"]) for f in files]


def check(entries):
    """UserError for packages kflash or the chip cannot take: unaligned, overlapping, beyond
    the 16 MiB flash."""
    spans = []
    for e in entries:
        if e.address % FLASH_SECTOR:
            raise UserError("flash address 0x%X of %s is not 4 KiB aligned" % (e.address, e.name))
        end = e.address + e.flash_size
        if end > FLASH_SIZE:
            raise UserError("%s (%d bytes at 0x%X) ends beyond the 16 MiB flash"
                            % (e.name, e.flash_size, e.address))
        spans.append((e.address, end, e.name))
    spans.sort()
    for (a0, a1, n0), (b0, b1, n1) in zip(spans, spans[1:]):
        if b0 < a1:
            raise UserError("%s (0x%X-0x%X) overlaps %s at 0x%X: put the model higher "
                            "(--address) or use a smaller firmware" % (n0, a0, a1, n1, b0))


def build(path, entries):
    """Write the .kfpkg zip at `path` (deterministic: fixed timestamps)."""
    check(entries)
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise UserError("two binaries named %s in one kfpkg" % names)
    text = flash_list(entries)
    assert [(a, n) for a, n, _ in parse_like_kflash(text)] == [(e.address, e.name)
                                                               for e in entries]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in [("flash-list.json", text.encode("utf-8"))] + \
                [(e.name, e.data) for e in entries]:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return path
