"""StudentEnsemble: the mean of its members' class probabilities, stored, rebuilt and exported as one student."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tskd.data.labels import Label, LabelTable
from tskd.export import load_torch_student, write_student_package
from tskd.preprocess import NormalizationSpec
from tskd.runtime import OnnxSegmenter, StudentPackage
from tskd.student import build_student
from tskd.student.ensemble import StudentEnsemble
from tskd.student.networks import build_from_spec
from tskd.student.storage import load_student, save_student


def _members(count=3, in_channels=3, classes=3):
    members = []
    for seed in range(count):
        torch.manual_seed(seed)
        members.append(build_student("unet_tiny", num_classes=classes, input_size=32, in_channels=in_channels).eval())
    return members


def test_the_ensemble_answers_with_the_log_of_its_members_mean_probabilities():
    members = _members()
    ensemble = StudentEnsemble(members).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = torch.stack([torch.softmax(m(x), 1) for m in members]).mean(0)
        out = ensemble(x)
    assert out.shape == (2, 3, 32, 32)
    assert torch.allclose(torch.softmax(out, 1), expected, atol=1e-5)  # its logits are log-probabilities
    assert torch.allclose(out.exp().sum(1), torch.ones(2, 32, 32), atol=1e-4)
    # an ensemble of one student's copies is that student
    twins = StudentEnsemble([members[0], members[0]]).eval()
    with torch.no_grad():
        assert torch.equal(twins(x).argmax(1), members[0](x).argmax(1))
    assert ensemble.in_channels == 3 and ensemble.num_classes == 3 and ensemble.input_size == 32


def test_members_must_agree_and_an_ensemble_is_not_trained_as_a_student():
    with pytest.raises(ValueError, match="at least two members"):
        StudentEnsemble(_members(1))
    with pytest.raises(ValueError, match="member 1 has in_channels 1, member 0 has 3"):
        StudentEnsemble([_members(1)[0], _members(1, in_channels=1)[0]])
    with pytest.raises(ValueError, match="member 1 has num_classes 2"):
        StudentEnsemble([_members(1)[0], _members(1, classes=2)[0]])
    with pytest.raises(ValueError, match="single students"):
        StudentEnsemble([_members(1)[0], StudentEnsemble(_members(2))])
    with pytest.raises(TypeError, match="not distilled or trained further"):
        StudentEnsemble(_members(2)).forward_with_features(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"expected input \(B, 3, H, W\)"):
        StudentEnsemble(_members(2))(torch.randn(1, 1, 32, 32))


def test_saved_and_rebuilt_from_its_spec(tmp_path):
    ensemble = StudentEnsemble(_members()).eval()
    spec = ensemble.spec()
    assert spec["name"] == "ensemble" and [m["name"] for m in spec["members"]] == ["unet_tiny"] * 3
    assert json.loads(json.dumps(spec)) == spec
    assert build_from_spec(spec).spec() == spec
    path = save_student(ensemble, tmp_path / "student.pt")
    loaded = load_student(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), ensemble(x), atol=1e-6)


def test_exported_as_one_onnx_graph_that_equals_torch(tmp_path):
    ensemble = StudentEnsemble(_members(in_channels=3)).eval()
    labels = LabelTable([Label(0, "background"), Label(1, "a"), Label(2, "b")], source="test")
    folder = write_student_package(tmp_path / "package", student=ensemble, labels=labels, input_size=32, slice_axis=0,
                                   normalization=NormalizationSpec(mode="percentile", p_low=1.0, p_high=99.0),
                                   teacher_info=None, metrics=None)
    meta = json.loads((folder / "tskd-model.json").read_text(encoding="utf-8"))
    assert meta["student"]["architecture"] == "ensemble"
    assert meta["student"]["parameters"] == sum(p.numel() for p in ensemble.parameters())
    assert meta["input"]["context_slices"] == 1 and meta["onnx"]["argmax_agreement"] == 1.0
    model = OnnxSegmenter(StudentPackage.load(folder), threads=1)
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = ensemble(torch.from_numpy(x)).numpy()
    assert np.allclose(model.logits(x), expected, atol=1e-4)
    torch_again = load_torch_student(folder)
    with torch.no_grad():
        assert torch.allclose(torch_again(torch.from_numpy(x)), torch.from_numpy(expected), atol=1e-5)
