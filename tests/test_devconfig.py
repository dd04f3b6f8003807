"""host/devconfig.py: the /flash/config.json dict, every number from the manifest."""
import copy
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from device import detect  # noqa: E402
from host import devconfig  # noqa: E402
from host.errors import UserError  # noqa: E402

MANIFEST = {
    "schema": 1,
    "kmodel": {"path": "face.kmodel", "sha256": "ab" * 32, "size": 412345, "version": 5,
               "compiler": "nncase 1.9.0.20230322"},
    "input": {"node": "Input_image", "height": 224, "width": 320, "channels": 3,
              "format": "rgb", "kmodel_layout": "NCHW", "kmodel_dtype": "uint8",
              "scale": "0-1", "mean": [0, 0, 0], "std": [1, 1, 1]},
    "outputs": [{"node": "yolo/output", "tf_shape": [1, 7, 10, 30], "shape_chw": [30, 7, 10]}],
    "decoder": {"type": "yolo2", "anchors": [1.1, 1.3, 2.0, 2.5, 3.1, 3.9, 4.2, 5.0, 6.0, 7.0],
                "classes": 1, "labels": ["face"], "threshold": 0.45, "nms": 0.35},
    "flash": {"address": 0x300000, "end": 0x300000 + 412345},
    "firmware": "canmv-v5",
    "frozen_pb": {"path": "model.pb", "sha256": "cd" * 32, "input_node": "Input_image",
                  "output_nodes": ["yolo/output"]},
}


def test_flash_serve_config_takes_every_number_from_the_manifest():
    cfg = devconfig.device_config(MANIFEST)
    assert cfg["mode"] == "serve" and cfg["baud"] == 1500000
    assert cfg["model"] == {"source": "flash", "address": 0x300000, "size": 412345,
                            "sha256": "ab" * 32, "version": 5}
    assert cfg["input"] == {"width": 320, "height": 224, "channels": 3}
    assert cfg["outputs"] == [{"node": "yolo/output", "shape": [30, 7, 10]}]
    d = cfg["decoder"]
    assert d["anchors"] == MANIFEST["decoder"]["anchors"]
    assert (d["type"], d["classes"], d["labels"], d["threshold"], d["nms"]) == \
        ("yolo2", 1, ["face"], 0.45, 0.35)
    assert cfg["firmware"] == "canmv-v5"
    assert cfg["read_buf_len"] == devconfig.DEFAULT_READ_BUF_LEN <= 65534
    assert detect.check_config(cfg) == []
    # JSON round trip, as the board reads it
    assert json.loads(devconfig.to_json(cfg)) == cfg


def test_file_source_and_live_mode():
    cfg = devconfig.device_config(MANIFEST, mode="live", baud=115200, model_source="file")
    assert cfg["model"]["path"] == "/flash/face.kmodel"
    assert "address" not in cfg["model"] and cfg["model"]["size"] == 412345
    assert cfg["mode"] == "live" and detect.check_config(cfg) == []
    cfg = devconfig.device_config(MANIFEST, model_source="file", model_path="/sd/m.kmodel")
    assert cfg["model"]["path"] == "/sd/m.kmodel"


@pytest.mark.parametrize("kwargs, fragment", [
    ({"mode": "loop"}, "mode"),
    ({"model_source": "sd"}, "model source"),
    ({"baud": 0}, "baud"),
    ({"baud": "1500000"}, "baud"),
    ({"read_buf_len": 70000}, "read_buf_len"),
    ({"model_source": "file", "model_path": "/tmp/x.kmodel"}, "/flash/ or /sd/"),
    ({"input_crc": "yes"}, "input_crc"),
])
def test_bad_arguments(kwargs, fragment):
    with pytest.raises(UserError) as e:
        devconfig.device_config(MANIFEST, **kwargs)
    assert fragment in str(e.value)


@pytest.mark.parametrize("mutate, fragment", [
    (lambda m: m["kmodel"].pop("size"), "kmodel.size"),
    (lambda m: m["flash"].update(address=0), "flash.address"),
    (lambda m: m["outputs"][0].update(shape_chw=[30, 7]), "shape_chw"),
    (lambda m: m["decoder"].update(type="ssd"), "decoder.type"),
    (lambda m: m["input"].update(width="320"), "input.width"),
    (lambda m: m.pop("firmware"), "firmware"),
])
def test_bad_manifest(mutate, fragment):
    m = copy.deepcopy(MANIFEST)
    mutate(m)
    with pytest.raises(UserError) as e:
        devconfig.device_config(m)
    assert fragment in str(e.value)


def test_check_config_reports_problems():
    cfg = devconfig.device_config(MANIFEST)
    cfg["model"].pop("size")
    cfg["outputs"][0]["shape"] = [0, 1, 1]
    cfg["read_buf_len"] = 100000
    bad = " ".join(detect.check_config(cfg))
    assert "model.size" in bad and "outputs[0].shape" in bad and "read_buf_len" in bad
    assert detect.check_config([]) == ["config is not a JSON object"]
