"""The U-Net students' body (tskd.student.unet_body, plain torch) against MONAI 1.6.1's ``UNet``, which
it replaced: the same module tree (names and leaf layers), the same state_dict keys and shapes, the same
initial weights from the same seed, and the same outputs bit for bit, for every U-Net spec, both layouts
and three input sizes; and a student saved while the body was MONAI's loads strictly."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from monai.networks.layers.simplelayers import SkipConnection as MonaiSkipConnection
from monai.networks.nets import UNet
from torch import nn

from tskd.student import build_student
from tskd.student import unet as unet_module
from tskd.student.specs import UNET_SPECS, UNetSpec
from tskd.student.unet import LAYOUT, LEGACY_LAYOUT, UNetStudent
from tskd.student.unet_body import UNetBody

SIZES = (32, 64, 128)
NUM_CLASSES = 3


def _monai_student(spec: UNetSpec, *, input_size: int, layout: str, name: str = "unet_small") -> UNetStudent:
    """The student exactly as tskd built it while its body was MONAI's ``UNet``: the same UNetStudent code
    with MONAI's classes in place of the body's (its state_dict holds the ``_bottleneck`` copy too)."""
    with mock.patch.object(unet_module, "UNetBody", lambda **kw: UNet(spatial_dims=2, **kw)), \
            mock.patch.object(unet_module, "SkipConnection", MonaiSkipConnection):
        old = UNetStudent(name=name, num_classes=NUM_CLASSES, input_size=input_size, spec=spec, layout=layout)
    assert isinstance(old.unet, UNet) and type(old._bottleneck).__module__.startswith("monai.")
    return old


def _leaves(module: nn.Module) -> dict[str, str]:
    """Every submodule's name -> its repr if it is a leaf (torch layers), else '' (containers)."""
    return {name: repr(m) if not list(m.children()) else "" for name, m in module.named_modules()}


@pytest.mark.parametrize("layout", [LAYOUT, LEGACY_LAYOUT])
@pytest.mark.parametrize("name", sorted(UNET_SPECS))
def test_the_body_is_monais_unet_tree_weights_and_numbers(name, layout):
    spec = UNET_SPECS[name]
    for size in SIZES:
        seed = size  # another seed, other weights, at each size
        torch.manual_seed(seed)
        ours = UNetStudent(name=name, num_classes=NUM_CLASSES, input_size=size, spec=spec, layout=layout)
        torch.manual_seed(seed)
        old = _monai_student(spec, input_size=size, layout=layout, name=name)
        assert _leaves(ours.unet) == _leaves(old.unet), (name, layout, size)
        new_state, old_state = ours.state_dict(), old.state_dict()
        assert list(new_state) == list(old_state), (name, layout, size)
        for key, value in old_state.items():
            assert new_state[key].shape == value.shape and torch.equal(new_state[key], value), (key, size)
        x = torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(seed))
        for train in (True, False):
            ours.train(train)
            old.train(train)
            with torch.no_grad():
                new_logits, new_features = ours.forward_with_features(x)
                old_logits, old_features = old.forward_with_features(x)
            assert torch.equal(new_logits, old_logits), (name, layout, size, train)
            assert torch.equal(new_features, old_features), (name, layout, size, train)
        if size == SIZES[0]:  # the backward pass runs through the same operations: the same gradients
            grads = []
            for model in (ours.train(), old.train()):
                model(x).square().mean().backward()
                grads.append([p.grad for p in model.parameters()])
            assert len(grads[0]) == len(grads[1]) and all(torch.equal(a, b) for a, b in zip(*grads))


def test_other_norms_and_dropout_match_monai_too():
    """Batch norm, dropout > 0 (same random masks from the same seed) and two residual units."""
    arguments = dict(in_channels=2, out_channels=3, channels=(8, 16, 32), strides=(2, 2), num_res_units=2,
                     norm="batch", dropout=0.2)
    torch.manual_seed(3)
    ours = UNetBody(**arguments)
    torch.manual_seed(3)
    old = UNet(spatial_dims=2, **arguments)
    assert _leaves(ours) == _leaves(old)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), old.state_dict().values()))
    x = torch.randn(4, 2, 32, 32)
    outputs = []
    for model in (ours, old):
        torch.manual_seed(11)
        outputs.append(model.train()(x))
    assert torch.equal(*outputs)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), old.state_dict().values()))  # BN stats
    assert torch.equal(ours.eval()(x), old.eval()(x))
    with pytest.raises(ValueError, match="norm 'group' is not supported; supported: instance, batch"):
        UNetBody(**{**arguments, "norm": "group"})


def test_a_spec_with_an_unsupported_norm_is_named():
    with pytest.raises(ValueError, match="student 'unet_odd'.*norm 'layer'"):
        UNetStudent(name="unet_odd", num_classes=2, input_size=32, spec=UNetSpec(norm="layer"))


@pytest.mark.parametrize("layout", [LAYOUT, LEGACY_LAYOUT])
def test_a_student_saved_with_monais_body_loads_strictly(tmp_path, layout):
    """The state_dict of the MONAI-bodied student, saved in the student file format, loads into the new
    one with strict=True and gives the same logits and bottleneck features."""
    from tskd.student.storage import load_student

    torch.manual_seed(5)
    old = _monai_student(UNET_SPECS["unet_small"], input_size=64, layout=layout)
    old.unet.model[0].conv.unit0.conv.bias.data.add_(0.5)  # weights no fresh build has
    spec = build_student("unet_small", num_classes=NUM_CLASSES, input_size=64, layout=layout).spec()
    torch.save({"format": "tskd-student-weights", "step": -1, "spec": spec, "state_dict": old.state_dict()},
               tmp_path / "student.pt")
    loaded = load_student(tmp_path / "student.pt")
    fresh = build_student("unet_small", num_classes=NUM_CLASSES, input_size=64, layout=layout)
    fresh.load_state_dict(old.state_dict(), strict=True)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        logits, features = loaded.eval().forward_with_features(x)
        old_logits, old_features = old.eval().forward_with_features(x)
    assert torch.equal(logits, old_logits) and torch.equal(features, old_features)
    assert torch.equal(fresh.eval()(x), old_logits)
