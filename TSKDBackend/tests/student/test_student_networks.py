from __future__ import annotations

import pytest
import torch

from tskd.student import (
    FeatureProjector,
    StudentWithProjector,
    available_students,
    build_student,
    count_parameters,
    unwrap_student,
)

ALL = ["vit_tiny", "vit_nano", "unet_small", "unet_tiny"]


def test_registry_lists_the_students():
    assert set(ALL) <= set(available_students())
    with pytest.raises(ValueError, match="unknown student 'vit_huge'.*vit_tiny"):
        build_student("vit_huge", num_classes=2, input_size=64)


@pytest.fixture(scope="module")
def students():
    torch.manual_seed(0)
    return {name: build_student(name, num_classes=3, input_size=64).eval() for name in ALL}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size", [64, 128])
def test_shapes_of_logits_and_features(students, name, size):
    model = students[name]  # built for 64: a ViT interpolates its position embeddings at 128
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        logits = model(x)
        logits2, features = model.forward_with_features(x)
    assert logits.shape == (2, 3, size, size)
    assert features.shape == (2, model.feature_channels, size // 16, size // 16)
    assert torch.allclose(logits, logits2, atol=1e-5)
    assert torch.isfinite(logits).all() and torch.isfinite(features).all()


def test_parameter_counts():
    counts = {name: count_parameters(build_student(name, num_classes=2, input_size=256)) for name in ALL}
    vit = build_student("vit_tiny", num_classes=2, input_size=256)
    encoder = count_parameters(vit.encoder)
    # ViT-Tiny encoder: 12 x (4*192^2 + 2*192*768 + biases + norms) + patch/pos embeddings ~ 5.4M
    assert 5_200_000 < encoder < 5_700_000
    assert 5_500_000 < counts["vit_tiny"] < 7_500_000
    assert 500_000 < counts["unet_small"] < 1_500_000
    assert counts["unet_tiny"] < 100_000 and counts["vit_nano"] < 500_000
    # the unused cross-attention norms MONAI creates are frozen
    assert count_parameters(vit, trainable_only=True) == counts["vit_tiny"] - 12 * 2 * 192


@pytest.mark.parametrize("name", ["vit_nano", "unet_tiny"])
def test_bad_inputs_are_clear_value_errors(students, name):
    model = students[name]
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.randn(1, 1, 72, 72))
    with pytest.raises(ValueError, match=r"expected input \(B, 1, H, W\)"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="multiple of 16"):
        build_student(name, num_classes=2, input_size=100)
    with pytest.raises(ValueError, match="num_classes"):
        build_student(name, num_classes=1, input_size=64)


def test_spec_rebuilds_the_same_network(students):
    model = students["vit_nano"]
    again = build_student(**model.spec())
    assert again.spec() == {"name": "vit_nano", "num_classes": 3, "input_size": 64, "in_channels": 1}
    assert count_parameters(again) == count_parameters(model)


def test_projector_and_wrapper(students):
    student = students["unet_tiny"]
    projector = FeatureProjector(student.feature_channels, 8)
    model = StudentWithProjector(student=student, projector=projector)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), student(x))
        logits, projected = model(x, return_features=True)
    assert logits.shape == (2, 3, 64, 64) and projected.shape == (2, 8, 4, 4)
    assert projector(torch.randn(2, student.feature_channels, 4, 4), size=(16, 16)).shape == (2, 8, 16, 16)
    assert unwrap_student(model) is student
    with pytest.raises(ValueError, match="projector expects 5"):
        StudentWithProjector(student=student, projector=FeatureProjector(5, 8))


def test_parameter_summary_splits_encoder_and_decoder():
    from tskd.student import parameter_summary

    model = build_student("vit_nano", num_classes=2, input_size=64)
    summary = parameter_summary(model)
    children = sum(v for k, v in summary.items() if k not in ("total", "trainable"))
    assert summary["total"] == count_parameters(model) == children
    assert summary["encoder"] == count_parameters(model.encoder) and summary["trainable"] < summary["total"]
