"""`make ncc`: put nncase v0.2.0-beta4's `ncc` (kmodel V4) at .venv/bin/ncc.

First match wins:
  --ncc PATH   an existing binary, version-checked, copied in;
  --src DIR    DIR/build.sh OUT_DIR builds it from source (this project's machines: the
               shared tools folder; see its README);
  otherwise    the official release archive from kendryte/nncase's GitHub releases (the one
               aXeleRate downloads; no checksum is published, so its sha256 is printed).
Nothing is fetched or built when --dest already holds an ncc v0.2.

  python -m host.ncc_install --dest .venv/bin/ncc [--ncc PATH | --src DIR]
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from host import cli, ncc  # noqa: E402
from host.errors import UserError  # noqa: E402

RELEASE_URL = ("https://github.com/kendryte/nncase/releases/download/v0.2.0-beta4/"
               "ncc_linux_x86_64.tar.xz")
DOWNLOAD_TIMEOUT = 120
BUILD_TIMEOUT = 3600
OTHER_WAYS = ("get ncc another way: make ncc NCC=/path/to/ncc (a v0.2.0-beta4 binary you "
              "have) or make ncc NCC_SRC=DIR (a folder whose build.sh OUT_DIR builds it)")


def parser():
    p = cli.ArgumentParser(prog="host/ncc_install.py", description=__doc__.split("\n")[0])
    p.add_argument("--dest", required=True, help="where the binary goes (.venv/bin/ncc)")
    p.add_argument("--ncc", help="an existing ncc v0.2 binary to install")
    p.add_argument("--src", help="a folder with build.sh OUT_DIR that builds ncc")
    return p


def is_v02(path):
    try:
        return os.path.isfile(path) and ncc.detect_version(path) == "0.2"
    except UserError:
        return False


def install(binary, dest):
    ncc.require_v02(ncc.find_ncc(binary))
    if os.path.abspath(binary) != os.path.abspath(dest):
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        temp = dest + ".part"
        shutil.copyfile(binary, temp)
        os.chmod(temp, 0o755)
        os.replace(temp, dest)
    print("ncc v0.2 installed at %s (sha256 %s)" % (dest, ncc.identity(dest)["sha256"]))


def build(src, work):
    script = os.path.join(src, "build.sh")
    if not os.path.isfile(script):
        raise UserError("NCC_SRC=%s has no build.sh: point it at the folder holding ncc's "
                        "build script, or %s" % (src, OTHER_WAYS))
    out = os.path.join(work, "out")
    print("building ncc with %s (a few minutes)" % script, flush=True)
    try:
        proc = subprocess.run(["bash", script, out], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise UserError("%s did not finish within %d s" % (script, BUILD_TIMEOUT))
    lines = [l for l in proc.stdout.decode("utf-8", "replace").splitlines() if l.strip()]
    binary = os.path.join(out, "ncc")
    if proc.returncode != 0 or not os.path.isfile(binary):
        raise UserError("%s failed (exit %d): %s" % (script, proc.returncode,
                                                     lines[-1] if lines else "no output"))
    return binary


def download(work, url=RELEASE_URL):
    archive = os.path.join(work, "ncc.tar.xz")
    print("downloading %s" % url, flush=True)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response, \
                open(archive, "wb") as f:
            shutil.copyfileobj(response, f)
    except (OSError, ValueError) as exc:
        raise UserError("cannot download %s (%s): %s" % (url, getattr(exc, "reason", exc),
                                                         OTHER_WAYS))
    with open(archive, "rb") as f:
        print("sha256 %s  %s" % (hashlib.sha256(f.read()).hexdigest(), url))
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers()
                       if m.isfile() and os.path.basename(m.name) == "ncc"]
            if not members:
                raise UserError("%s holds no file named ncc: %s" % (url, OTHER_WAYS))
            binary = os.path.join(work, "ncc")
            with tar.extractfile(members[0]) as src, open(binary, "wb") as dst:
                shutil.copyfileobj(src, dst)
    except tarfile.TarError as exc:
        raise UserError("%s is not a readable .tar.xz (%s): %s" % (url, exc, OTHER_WAYS))
    os.chmod(binary, 0o755)
    return binary


def main(argv):
    opts = parser().parse_args(argv)
    if opts.ncc:
        install(opts.ncc, opts.dest)
        return 0
    if is_v02(opts.dest):
        print("ncc v0.2 already at %s: nothing to do" % opts.dest)
        return 0
    with tempfile.TemporaryDirectory(prefix="k210-ncc-install-") as work:
        binary = build(opts.src, work) if opts.src else download(work)
        install(binary, opts.dest)
    return 0


if __name__ == "__main__":
    cli.run(main)
