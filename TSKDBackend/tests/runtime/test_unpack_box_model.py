"""unpack_box_model: the zip the backend's box-model routes send becomes a checked folder, or nothing.

The graphs here are placeholder bytes: unpacking checks ``box_model.json`` and that the graphs are
there (onnxruntime loads them later, in ``OnnxBoxPredictor``; the real graphs are exercised by
``tests/box`` and ``tests/service/test_service_box_models.py``).
"""

from __future__ import annotations

import json
import zipfile

import pytest

from tskd.runtime import PackageError, unpack_box_model
from tskd.runtime.box_model import BOX_FORMAT_NAME, BOX_METADATA_NAME, DECODER_NAME, ENCODER_NAME, PREPROCESSING

METADATA = {"format": BOX_FORMAT_NAME, "format_version": 1, "model": "litemedsam", "architecture": "litemedsam",
            "checkpoint_sha256": "ab" * 32, "input_size": 256, "embedding_shape": [256, 64, 64],
            "preprocessing": PREPROCESSING}


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _members(prefix="", **changes):
    metadata = dict(METADATA, **changes)
    return {prefix + BOX_METADATA_NAME: json.dumps(metadata), prefix + ENCODER_NAME: b"encoder",
            prefix + DECODER_NAME: b"decoder"}


@pytest.mark.parametrize("prefix", ["", "box_model/"])
def test_a_box_model_zip_unpacks_into_its_folder_replacing_an_older_copy(tmp_path, prefix):
    target = tmp_path / "cache" / "litemedsam-abababababab"
    target.mkdir(parents=True)
    (target / "stale.onnx").write_bytes(b"old")
    info = unpack_box_model(_zip(tmp_path / "m.zip", _members(prefix)), target)
    assert info.folder == target and info.model == "litemedsam" and info.input_size == 256
    assert sorted(p.name for p in target.iterdir()) == sorted([BOX_METADATA_NAME, ENCODER_NAME, DECODER_NAME])
    assert (target / ENCODER_NAME).read_bytes() == b"encoder"
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no staging folder left


@pytest.mark.parametrize("members, match", [
    ({ENCODER_NAME: b"x", DECODER_NAME: b"y"}, "no box_model.json at the top of the zip"),
    ({BOX_METADATA_NAME: json.dumps(METADATA), ENCODER_NAME: b"x"}, "box_decoder.onnx: missing"),
    (_members(format="tskd-student"), "not an exported box model"),
    (dict(_members(), **{"../escape.onnx": b"x"}), "unsafe member"),
])
def test_a_bad_zip_leaves_nothing(tmp_path, members, match):
    target = tmp_path / "cache" / "model"
    with pytest.raises(PackageError, match=match):
        unpack_box_model(_zip(tmp_path / "bad.zip", members), target)
    assert not target.exists() and list((tmp_path / "cache").iterdir()) == []
