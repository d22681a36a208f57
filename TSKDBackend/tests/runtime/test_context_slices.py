"""A student that sees each slice between its neighbours (``context_slices``, 2.5D): the runtime gives
it the right neighbours (also beyond an ROI, clipped at the volume's ends), the package records it,
and an ONNX package reproduces torch on stacked slices."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.runtime.packages import make_package, make_volume
from tskd.inference.torch_model import TorchSliceModel
from tskd.preprocess import NormalizationSpec, apply_normalization, context_positions, slices_along, stack_slices
from tskd.runtime import (FORMAT_VERSION, OnnxSegmenter, PackageError, StudentPackage, VolumeSegmenter,
                          segment_volume)
from tskd.student import build_student

SLICES = 6


class _Neighbours:
    """A slice model whose answer names the neighbours it was given: on a volume whose slice ``k``
    holds the value ``k``, it labels every pixel ``10 * previous + next``."""

    input_size = 8
    label_values = list(range(10 * SLICES))
    num_classes = len(label_values)
    normalization = NormalizationSpec(mode="none")
    slice_axis = 0
    context_slices = 1

    def __init__(self) -> None:
        self.calls = []

    def logits(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(batch.shape)
        assert batch.shape[1:] == (3, 8, 8)
        previous = np.rint(batch[:, 0].mean(axis=(1, 2))).astype(int)
        following = np.rint(batch[:, 2].mean(axis=(1, 2))).astype(int)
        out = np.zeros((batch.shape[0], self.num_classes, 8, 8), np.float32)
        out[np.arange(batch.shape[0]), 10 * previous + following] = 1.0
        return out


def _ramp() -> np.ndarray:
    return np.repeat(np.arange(SLICES, dtype=np.float32), 8 * 8).reshape(SLICES, 8, 8)


def test_each_slice_gets_its_neighbours_clipped_at_the_ends():
    model = _Neighbours()
    labels = segment_volume(model, _ramp(), batch_size=4)
    want = [10 * max(k - 1, 0) + min(k + 1, SLICES - 1) for k in range(SLICES)]
    assert [int(labels[k, 0, 0]) for k in range(SLICES)] == want
    assert model.calls == [(4, 3, 8, 8), (2, 3, 8, 8)]  # batches of stacked slices, no more
    live = VolumeSegmenter(model, _ramp())
    for k in range(SLICES):
        np.testing.assert_array_equal(live.segment_slice(k), labels[k])


def test_an_roi_takes_neighbours_from_outside_its_slices():
    labels = segment_volume(_Neighbours(), _ramp(), roi=((2, 4), (0, 8), (2, 6)))
    assert int(labels[2, 0, 3]) == 13 and int(labels[3, 0, 3]) == 24  # slices 1 and 4 lie outside the box
    assert not labels[:2].any() and not labels[4:].any() and not labels[2:4, :, :2].any()


def _stacked_reference(model: torch.nn.Module, volume: np.ndarray, *, values, size: int, context: int,
                       normalization: NormalizationSpec) -> np.ndarray:
    normalised = slices_along(apply_normalization(volume, normalization), 0)
    stacked = normalised[context_positions(np.arange(normalised.shape[0]), normalised.shape[0], context)]
    x = torch.from_numpy(np.ascontiguousarray(stacked, dtype=np.float32))
    height, width = x.shape[-2:]
    with torch.no_grad():
        logits = model(F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False))
        back = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    return stack_slices(np.asarray(values)[back.argmax(dim=1).numpy()], 0, volume.shape)


def test_a_package_records_its_context_and_reproduces_torch(tmp_path):
    folder, net = make_package(tmp_path / "package", in_channels=5, seed=3)
    meta = json.loads((folder / "tskd-model.json").read_text(encoding="utf-8"))
    assert meta["format_version"] == FORMAT_VERSION == 2 and meta["input"]["context_slices"] == 2
    package = StudentPackage.load(folder)
    assert package.context_slices == 2
    onnx = OnnxSegmenter(package, threads=1)
    assert onnx.context_slices == 2 and onnx.channels == 5
    volume = make_volume()
    got = segment_volume(onnx, volume)
    want = _stacked_reference(net, volume, values=(0, 1, 4), size=32, context=2, normalization=package.normalization)
    assert np.mean(got == want) > 0.999
    assert len(np.unique(got)) > 1
    torch_model = TorchSliceModel.from_package(package)
    assert torch_model.context_slices == 2
    np.testing.assert_array_equal(segment_volume(torch_model, volume), want)
    with pytest.raises(ValueError, match=r"\(B, 5, 32, 32\)"):
        onnx.logits(np.zeros((1, 1, 32, 32), np.float32))


def test_single_slice_packages_stay_format_1_and_bad_fields_are_named(tmp_path):
    folder, _ = make_package(tmp_path / "single")
    meta = json.loads((folder / "tskd-model.json").read_text(encoding="utf-8"))
    assert meta["format_version"] == 1 and "context_slices" not in meta["input"]
    assert StudentPackage.load(folder).context_slices == 0
    for bad in (-1, 9, "two"):
        meta["input"]["context_slices"] = bad
        (folder / "tskd-model.json").write_text(json.dumps(meta), encoding="utf-8")
        with pytest.raises(PackageError, match="input.context_slices"):
            StudentPackage.load(folder)
    with pytest.raises(ValueError, match="odd number"):
        make_package(tmp_path / "even", in_channels=2)


def test_a_torch_student_with_neighbours_says_so():
    net = build_student("unet_tiny", num_classes=2, input_size=16, in_channels=3)
    model = TorchSliceModel(net, input_size=16, label_values=[0, 1], normalization=NormalizationSpec(mode="none"),
                            slice_axis=0)
    assert model.context_slices == 1
    assert segment_volume(model, np.random.default_rng(0).normal(size=(4, 16, 16))).shape == (4, 16, 16)
