"""manifest.json: the single source of truth written by `make kmodel`.

Flash, the device config and eval read every number from here (schema in docs/design.md).
Paths inside are relative to the manifest's directory.
"""
import hashlib
import json
import os

from host import atomic
from host.errors import UserError

SCHEMA = 1
DEFAULT_PATH = os.path.join("build", "manifest.json")
REQUIRED = ("kmodel", "input", "outputs", "decoder", "flash", "firmware", "frozen_pb")


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write(path, manifest):
    atomic.write_json(path, manifest)


class Manifest(dict):
    """A loaded manifest; `path_of(key)` resolves its artifact paths."""

    def __init__(self, data, path):
        dict.__init__(self, data)
        self.path = os.path.abspath(path)
        self.directory = os.path.dirname(self.path)

    def path_of(self, section):
        return os.path.join(self.directory, self[section]["path"])

    def kmodel_bytes(self):
        with open(self.path_of("kmodel"), "rb") as f:
            return f.read()


def load(path, verify_kmodel=True):
    """Read and validate a manifest; with verify_kmodel, the kmodel must match its hash."""
    if not os.path.isfile(path):
        raise UserError("manifest %s not found: run `make kmodel` first (or pass --manifest)"
                        % path)
    try:
        with open(path) as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError("manifest %s is not valid JSON (%s): run `make kmodel` again"
                        % (path, str(exc)[:80]))
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or \
            any(k not in data for k in REQUIRED):
        raise UserError("manifest %s is not a k210-deploy manifest (schema %d): run "
                        "`make kmodel` again" % (path, SCHEMA))
    if not isinstance(data["kmodel"], dict) or not isinstance(data["kmodel"].get("path"), str) \
            or not isinstance(data["kmodel"].get("sha256"), str):
        raise UserError("manifest %s has no valid kmodel entry: run `make kmodel` again" % path)
    manifest = Manifest(data, path)
    if verify_kmodel:
        verify_kmodel_file(manifest)
    return manifest


def verify_kmodel_file(manifest):
    """The kmodel the manifest names is there, is the one it recorded, and parses."""
    from host import kmodel as kmodel_mod
    path = manifest.path_of("kmodel")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        if not os.path.exists(path):
            raise UserError("kmodel %s named by %s is missing: run `make kmodel` again"
                            % (path, manifest.path))
        raise UserError("kmodel %s cannot be read (%s): check its permissions"
                        % (path, exc.strerror or exc))
    try:
        kmodel_mod.parse(data, path)
        broken = None
    except UserError as exc:
        broken = str(exc)
    if hashlib.sha256(data).hexdigest() != manifest["kmodel"]["sha256"]:
        if broken:
            raise UserError("kmodel %s is truncated or corrupt (%s): run `make kmodel` again"
                            % (path, broken.split(": ", 2)[-1]))
        raise UserError("kmodel %s changed since `make kmodel` wrote %s (sha256 differs): "
                        "run `make kmodel` again" % (path, manifest.path))
    if broken:
        raise UserError("kmodel %s named by %s is not a valid kmodel (%s): run `make kmodel` "
                        "again" % (path, manifest.path, broken.split(": ", 2)[-1]))


def check_frozen_pb(manifest):
    """The frozen graph serial_eval's host reference runs: there, and the one recorded."""
    fp = manifest.get("frozen_pb") or {}
    if not isinstance(fp.get("path"), str):
        raise UserError("manifest %s names no frozen graph: run `make kmodel` again"
                        % manifest.path)
    path = manifest.path_of("frozen_pb")
    if not os.path.isfile(path):
        raise UserError("frozen graph %s named by %s is missing: run `make kmodel` again"
                        % (path, manifest.path))
    if fp.get("sha256") and sha256_file(path) != fp["sha256"]:
        raise UserError("frozen graph %s changed since %s was written (sha256 differs): run "
                        "`make kmodel` again" % (path, manifest.path))
