"""Write outputs so that a failure never leaves a half-written file behind.

Single files go to a temporary name in the same directory and are renamed over the target.
A command producing several files stages them in a hidden directory inside the output
directory and moves them in only when everything succeeded.
"""
import contextlib
import json
import os
import shutil
import tempfile


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_bytes(path, data):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_text(path, text):
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def staged_dir(out_dir):
    """Yield a staging directory; on success move its files into out_dir, else discard it."""
    os.makedirs(out_dir, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".staging-", dir=out_dir)
    try:
        yield stage
        for name in sorted(os.listdir(stage)):
            target = os.path.join(out_dir, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            os.replace(os.path.join(stage, name), target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
