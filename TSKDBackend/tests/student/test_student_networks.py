from __future__ import annotations

import pytest
import torch

from tskd.student import (
    FeatureProjector,
    StudentWithProjector,
    available_students,
    build_from_spec,
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
    too_small = {"vit_nano": (100, "multiple of 16"), "unet_tiny": (6, "even side of at least 8")}
    size, message = too_small[name]
    with pytest.raises(ValueError, match=message):
        build_student(name, num_classes=2, input_size=size)
    with pytest.raises(ValueError, match="num_classes"):
        build_student(name, num_classes=1, input_size=64)


def test_spec_rebuilds_the_same_network(students):
    model = students["vit_nano"]
    again = build_from_spec(model.spec())
    assert again.spec() == {"name": "vit_nano", "num_classes": 3, "input_size": 64, "in_channels": 1}
    assert count_parameters(again) == count_parameters(model)
    unet = students["unet_small"]
    assert unet.spec() == {"name": "unet_small", "num_classes": 3, "input_size": 64, "in_channels": 1, "layout": "head"}
    rebuilt = build_from_spec(unet.spec())
    rebuilt.load_state_dict(unet.state_dict())  # same parameters, same names


@pytest.mark.parametrize("size, levels", [(16, 2), (32, 3), (48, 3), (64, 4), (128, 4), (256, 4), (100, 2)])
def test_unet_depth_is_planned_from_the_input_size(size, levels):
    """Stride-2 levels: as many as keep the bottleneck at least 4 pixels wide (at most 4)."""
    model = build_student("unet_small", num_classes=2, input_size=size).eval()
    assert model.levels == levels and model.size_multiple == 2**levels
    with torch.no_grad():
        logits, features = model.forward_with_features(torch.randn(1, 1, size, size))
    assert logits.shape == (1, 2, size, size)
    assert features.shape == (1, model.feature_channels, size // 2**levels, size // 2**levels)
    assert features.shape[-1] >= 4


def test_unet_ends_with_a_1x1_head_on_the_top_features():
    """The logits come from a 1x1 convolution over channels[0] feature maps, not from MONAI's
    K-channel top layer (instance norm and PReLU over the class maps)."""
    model = build_student("unet_small", num_classes=3, input_size=64)
    assert isinstance(model.head, torch.nn.Conv2d) and model.head.kernel_size == (1, 1)
    assert (model.head.in_channels, model.head.out_channels) == (16, 3)
    assert not [m for m in model.unet.modules() if isinstance(m, torch.nn.InstanceNorm2d) and m.num_features == 3]


def test_students_saved_before_the_head_existed_still_load(tmp_path):
    """A tskd 0.1 spec has no 'layout': it is rebuilt as the old MONAI layout and its weights fit."""
    from tskd.student.storage import load_student

    old = build_student("unet_small", num_classes=2, input_size=64, layout="monai")
    state = {k: v.clone() for k, v in old.state_dict().items()}
    assert not any(k.startswith("head.") for k in state)
    spec = {k: v for k, v in old.spec().items() if k != "layout"}  # what 0.1 wrote
    torch.save({"format": "tskd-student-weights", "step": -1, "spec": spec, "state_dict": state}, tmp_path / "s.pt")
    loaded = load_student(tmp_path / "s.pt")
    assert loaded.layout == "monai" and loaded.levels == 4
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), old.eval()(x), atol=1e-6)
    with pytest.raises(ValueError, match="unknown U-Net layout"):
        build_student("unet_small", num_classes=2, input_size=64, layout="other")


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
