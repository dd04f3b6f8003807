"""kmodel header parsing: V5 from the real compiler, V3/V4 from hand-built headers following
the layouts of nncase v0.1 (kpu_kmodel_header_t) and v0.2 (model_header)."""
import struct

import pytest

from host import kmodel, quantize
from host.errors import UserError
from test_nncase_stage import ZERO_ONE, random_u8, tiny_models


@pytest.fixture(scope="module")
def v5_bytes(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("kmodel") / "small.kmodel")
    quantize.compile_kmodel(tiny_models()["small"], path, random_u8(2, 32, 32), ZERO_ONE)
    with open(path, "rb") as f:
        return f.read()


def test_v5_header_from_nncase(v5_bytes, tmp_path):
    path = tmp_path / "m.kmodel"
    path.write_bytes(v5_bytes)
    info = kmodel.read(str(path))
    assert info["version"] == 5 and kmodel.version_of(str(path)) == 5
    assert info["size"] == len(v5_bytes)
    assert info["inputs"] == [{"dtype": "uint8", "shape": [1, 3, 32, 32], "size": 3072,
                               "location": "input"}]
    assert info["outputs"] == [{"dtype": "float32", "shape": [1, 4, 16, 16], "size": 4096,
                                "location": "output"}]
    assert [m["type"] for m in info["modules"]] == ["stackvm", "k210"]
    assert sum(m["size"] for m in info["modules"]) + 32 == len(v5_bytes)
    k210 = info["modules"][1]
    assert {"location": "kpu", "size": 2 * 1024 * 1024} in k210["mempools"]
    assert [s["name"] for s in k210["sections"]] == [".rdata", ".text"]


@pytest.mark.parametrize("cut", [0, 3, 8, 31, 40, 100, -1])
def test_truncated_v5_is_not_a_kmodel(v5_bytes, cut):
    with pytest.raises(UserError, match="not a kmodel: cut.kmodel: "):
        kmodel.parse(v5_bytes[:cut], "cut.kmodel")


def test_garbage_and_other_files_are_not_kmodels(tmp_path):
    with pytest.raises(UserError, match="not a kmodel: x.tflite: starts with"):
        kmodel.parse(b"\x1c\x00\x00\x00TFL3" + bytes(64), "x.tflite")
    with pytest.raises(UserError, match="unknown version 7"):
        kmodel.parse(b"LDMK" + struct.pack("<I", 7) + bytes(64), "v7.kmodel")
    with pytest.raises(UserError, match="corrupt header"):  # absurd module count
        kmodel.parse(b"LDMK" + struct.pack("<7I", 5, 32, 0, 8, 999999, 0, 0), "m.kmodel")
    with pytest.raises(UserError, match="cannot read kmodel"):
        kmodel.read(str(tmp_path / "missing.kmodel"))


def test_corrupt_v5_module_size(v5_bytes):
    data = bytearray(v5_bytes)
    struct.pack_into("<I", data, 32 + 16 + 8, 10 ** 8)  # first module's size
    with pytest.raises(UserError, match="not a kmodel: c.kmodel: module 'stackvm' claims"):
        kmodel.parse(bytes(data), "c.kmodel")


def test_v4_header():
    header = b"LDMK" + struct.pack("<9I", 4, 0, 1, 100, 5000, 3, 1, 2, 0)
    ranges = struct.pack("<4I", 1, 1, 0, 3 * 224 * 320)           # input: main, uint8
    shapes = struct.pack("<4i", 1, 3, 224, 320)
    outputs = struct.pack("<4I", 1, 0, 0, 30 * 7 * 10 * 4) + struct.pack("<4I", 1, 0, 8400, 16)
    nodes = struct.pack("<6I", 0x2001, 0, 0x2002, 8, 0x3, 4)      # KPU upload, conv, dequantize
    model = header + ranges + shapes + outputs + bytes(100) + nodes + bytes(12)
    info = kmodel.parse(model)
    assert info["version"] == 4 and info["target"] == "k210" and info["main_mem"] == 5000
    assert info["model_size"] == len(model) == kmodel.v4_size(lambda o, n: model[o:o + n])
    assert info["ops"] == ["KPUUpload", "KPUConv2D", "Dequantize"]
    with pytest.raises(UserError, match="truncated V4 model"):
        kmodel.parse(model[:-1])
    assert info["inputs"] == [{"dtype": "uint8", "shape": [1, 3, 224, 320], "size": 215040}]
    assert [o["size"] for o in info["outputs"]] == [8400, 16]
    assert info["outputs"][0]["shape"] is None  # V4 stores no output shapes
    with pytest.raises(UserError, match="truncated"):
        kmodel.parse(header + ranges)


def test_v3_header():
    data = struct.pack("<7I", 3, 0, 0, 12, 0, 76800, 2) + struct.pack("<4I", 0, 1400, 1400, 40)
    info = kmodel.parse(data + bytes(64))
    assert info["version"] == 3 and info["layers"] == 12 and info["main_mem"] == 76800
    assert [o["size"] for o in info["outputs"]] == [1400, 40]
    with pytest.raises(UserError, match="corrupt V3 header"):
        kmodel.parse(struct.pack("<7I", 3, 0, 1, 12, 0, 0, 1) + bytes(16))


def test_ldmk_identifier_is_the_v3_loader_number():
    # a V3-only MaixPy given a V4/V5 file reports "get V1263354956"
    assert struct.unpack("<I", kmodel.IDENTIFIER)[0] == 1263354956 == 0x4B4D444C
