"""write_student_package / zip_package / load_torch_student: complete, atomic, self-describing packages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tskd.data.labels import Label, LabelTable
from tskd.errors import CheckpointError
from tskd.export import load_torch_student, verification_inputs, write_student_package, zip_package
from tskd.export.onnx_export import OnnxVerificationError
from tskd.preprocess import NormalizationSpec, resolve_normalization
from tskd.runtime import StudentPackage
from tskd.student import FeatureProjector, StudentWithProjector, build_student

LABELS = LabelTable([Label(0, "background"), Label(2, "kidney", (0.2, 0.4, 0.6)), Label(5, "cyst")], source="t")
CT = NormalizationSpec(mode="ct", lower=-100.0, upper=300.0, mean=40.0, std=80.0, note="window")


def _write(folder, student=None, **overrides):
    torch.manual_seed(0)
    student = student or build_student("unet_tiny", num_classes=3, input_size=32)
    arguments = dict(student=student, labels=LABELS, input_size=32, slice_axis=2, normalization=CT,
                     teacher_info={"architecture": "medsam", "base": "medsam_vit_b.pth", "base_sha256": "ab" * 32,
                                   "has_foundation_weights": True, "lora_rank": 4},
                     metrics={"val_dice": np.float32(0.75), "per_class": {"2": 0.8, "5": float("nan")}})
    arguments.update(overrides)
    return write_student_package(folder, **arguments), student


def test_package_files_and_metadata(tmp_path):
    folder, student = _write(tmp_path / "run" / "package")
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "student.pt", "tskd-model.json"]
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["package"]  # no temporary folders left
    meta = json.loads((folder / "tskd-model.json").read_text(encoding="utf-8"))
    assert meta["format"] == "tskd-student" and meta["format_version"] == 1 and meta["created"].endswith("+00:00")
    assert meta["labels"][1] == {"value": 2, "name": "kidney", "color": [0.2, 0.4, 0.6]}
    assert meta["labels"][2]["value"] == 5 and len(meta["labels"][2]["color"]) == 3  # palette colour
    assert meta["input"] == {"size": 32, "slice_axis": 2, "normalization": CT.to_dict()}
    assert meta["student"]["architecture"] == "unet_tiny"
    assert meta["student"]["parameters"] == sum(p.numel() for p in student.parameters())
    assert meta["teacher"] == {"architecture": "medsam", "base": "medsam_vit_b.pth", "base_sha256": "ab" * 32,
                               "has_foundation_weights": True, "lora_rank": 4}
    assert meta["metrics"] == {"val_dice": 0.75, "per_class": {"2": 0.8, "5": None}}
    onnx = meta["onnx"]
    assert onnx["opset"] == 17 and onnx["input_name"] == "image" and onnx["output_name"] == "logits"
    assert onnx["argmax_agreement"] == 1.0 and onnx["verified_on"].startswith("seeded random")
    assert onnx["verified_pixels"] == 8 * 32 * 32
    package = StudentPackage.load(folder)
    assert package.label_values == [0, 2, 5] and package.normalization == CT and package.slice_axis == 2


def test_real_verification_inputs_and_no_teacher(tmp_path):
    slices = np.random.default_rng(0).normal(size=(3, 1, 32, 32)).astype(np.float32)
    folder, _ = _write(tmp_path / "p", verify_inputs=slices, teacher_info=None, metrics=None)
    meta = json.loads((folder / "tskd-model.json").read_text(encoding="utf-8"))
    assert meta["onnx"]["verified_on"] == "validation slices" and meta["onnx"]["verified_pixels"] == 3 * 32 * 32
    assert meta["teacher"] is None and meta["metrics"] == {}


def test_torch_weights_round_trip(tmp_path):
    folder, student = _write(tmp_path / "p")
    loaded = load_torch_student(folder)
    assert type(loaded) is type(student) and not loaded.training
    x = torch.from_numpy(verification_inputs(32))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), student.eval()(x), rtol=0, atol=0)
    (folder / "student.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_torch_student(folder)
    (folder / "student.pt").unlink()
    with pytest.raises(CheckpointError, match="has no student.pt"):
        load_torch_student(folder)


def test_wrapped_students_and_vit(tmp_path):
    torch.manual_seed(0)
    vit = build_student("vit_nano", num_classes=3, input_size=32)
    wrapped = StudentWithProjector(student=vit, projector=FeatureProjector(vit.feature_channels, 8))
    folder, _ = _write(tmp_path / "vit", student=wrapped)
    assert StudentPackage.load(folder).architecture == "vit_nano"
    assert load_torch_student(folder).name == "vit_nano"


def test_replacing_a_package_and_refusing_bad_arguments(tmp_path):
    folder, _ = _write(tmp_path / "p")
    (folder / "stale.txt").write_text("old", encoding="utf-8")
    _write(tmp_path / "p")
    assert not (folder / "stale.txt").exists()  # the whole folder was replaced
    student = build_student("unet_tiny", num_classes=2, input_size=32)
    with pytest.raises(ValueError, match="3 classes but the student outputs 2"):
        _write(tmp_path / "q", student=student)
    with pytest.raises(ValueError, match="input_size 64 differs"):
        _write(tmp_path / "q", input_size=64)
    resolved = resolve_normalization(np.arange(100.0), NormalizationSpec())
    with pytest.raises(ValueError, match="resolved spec"):
        _write(tmp_path / "q", normalization=resolved)
    with pytest.raises(ValueError, match="slice_axis"):
        _write(tmp_path / "q", slice_axis=3)
    assert not (tmp_path / "q").exists()


def test_failed_verification_writes_nothing(tmp_path, monkeypatch):
    import tskd.export.package as module

    def disagree(*args, **kwargs):
        raise OnnxVerificationError("onnxruntime disagrees with torch")

    monkeypatch.setattr(module, "verify_onnx", disagree)
    with pytest.raises(OnnxVerificationError):
        _write(tmp_path / "p")
    assert list(tmp_path.iterdir()) == []


def test_zip_package_names(tmp_path):
    folder, _ = _write(tmp_path / "my_model")
    path = zip_package(folder)
    assert path == tmp_path / "my_model.tskd.zip"
    custom = zip_package(folder, tmp_path / "out" / "x.tskd.zip")
    assert StudentPackage.load(custom).label_values == [0, 2, 5]
    with pytest.raises(ValueError, match=".tskd.zip"):
        zip_package(folder, tmp_path / "x.zip")
