"""Every file under device/ compiles with mpy-cross 1.11 (the firmware's MicroPython) and uses
nothing the device lacks that mpy-cross still accepts (k210-device.md, "MicroPython dialect")."""
import ast
import glob
import io
import os
import subprocess
import sys
import tokenize

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE_FILES = sorted(glob.glob(os.path.join(REPO, "device", "*.py")))

# attribute calls that do not exist on MicroPython 1.11 objects
MISSING_METHODS = {"hex", "fromhex", "cast", "tobytes", "translate", "maketrans", "casefold",
                   "expandtabs", "format_map", "isascii", "removeprefix", "removesuffix",
                   "zfill", "isidentifier", "isprintable"}
MISSING_MODULES = {"uselect", "select", "asyncio", "uasyncio", "typing", "dataclasses",
                   "enum", "pathlib", "functools", "itertools"}


def test_device_files_exist():
    names = {os.path.basename(p) for p in DEVICE_FILES}
    assert {"decoders.py", "protocol.py", "detect.py", "kpu_model.py", "server.py", "payloads.py",
            "pixel_views.py", "clock.py", "boot.py", "main.py"} <= names


@pytest.mark.parametrize("path", DEVICE_FILES, ids=os.path.basename)
def test_mpy_cross_1_11(path, tmp_path):
    out = tmp_path / "x.mpy"
    proc = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out), path],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data[:2] == b"M\x04", "not a version-4 .mpy (MicroPython 1.11)"


def dialect_problems(source, name="<src>"):
    problems = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.STRING:
            prefix = tok.string[:tok.string.index(tok.string[-1])].lower()
            if "f" in prefix:
                problems.append("%s:%d f-string" % (name, tok.start[0]))
        if tok.type == tokenize.OP and tok.string == ":=":
            problems.append("%s:%d walrus" % (name, tok.start[0]))
    tree = ast.parse(source)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr in MISSING_METHODS:
                problems.append("%s:%d .%s()" % (name, line, f.attr))
            if isinstance(f, ast.Attribute) and f.attr in ("from_bytes", "to_bytes"):
                for kw in node.keywords:
                    problems.append("%s:%d %s(%s=) keyword" % (name, line, f.attr, kw.arg))
            if isinstance(f, ast.Name) and f.id == "print":
                for kw in node.keywords:
                    if kw.arg == "flush":
                        problems.append("%s:%d print(flush=)" % (name, line))
        if isinstance(node, (ast.AsyncFunctionDef, ast.Await, ast.AsyncFor, ast.AsyncWith)):
            problems.append("%s:%d async/await" % (name, line))
        if isinstance(node, ast.Dict) and any(k is None for k in node.keys):
            problems.append("%s:%d {**d}" % (name, line))
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in MISSING_MODULES:
                    problems.append("%s:%d import %s" % (name, line, a.name))
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.split(".")[0] in MISSING_MODULES:
            problems.append("%s:%d from %s import" % (name, line, node.module))
        if isinstance(node, ast.JoinedStr):
            problems.append("%s:%d f-string" % (name, line))
    return problems


@pytest.mark.parametrize("path", DEVICE_FILES, ids=os.path.basename)
def test_device_dialect(path):
    with open(path) as f:
        source = f.read()
    assert dialect_problems(source, os.path.basename(path)) == []


@pytest.mark.parametrize("path", DEVICE_FILES, ids=os.path.basename)
def test_sibling_imports_work_both_ways(path):
    # `import protocol` on the board, `from device import protocol` on the host
    with open(path) as f:
        tree = ast.parse(f.read())
    siblings = {os.path.splitext(os.path.basename(p))[0] for p in DEVICE_FILES}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in siblings and node.col_offset == 0:
                    # a top-level bare sibling import must sit in try/except ImportError
                    pytest.fail("%s: top-level `import %s` without a host fallback"
                                % (os.path.basename(path), a.name))


def test_scanner_catches_what_mpy_cross_accepts():
    bad = ("x = b'ab'.hex()\ny = bytes.fromhex('00')\nz = int.from_bytes(b, byteorder='little')\n"
           "import uselect\nasync def f():\n    await g()\nprint(1, flush=True)\n")
    found = " ".join(dialect_problems(bad))
    for what in (".hex()", ".fromhex()", "from_bytes(byteorder=)", "import uselect",
                 "async/await", "print(flush=)"):
        assert what in found, what
    assert dialect_problems("d = {**a}\n")
    assert dialect_problems("x = f'{a}'\n")
