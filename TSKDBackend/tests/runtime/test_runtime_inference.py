"""segment_volume / VolumeSegmenter with a real package: values, shapes, ROI, exactness against torch."""

from __future__ import annotations

import numpy as np
import pytest

from tests.runtime.packages import make_package, make_volume, torch_reference
from tskd.errors import CancelledError
from tskd.inference.torch_model import TorchSliceModel
from tskd.preprocess import NormalizationSpec
from tskd.runtime import OnnxSegmenter, StudentPackage, VolumeSegmenter, effective_axis, resolve_roi, segment_volume


@pytest.fixture(scope="module")
def onnx_014(package_014):
    return OnnxSegmenter(package_014[0], threads=1)


def test_onnx_segmenter_reports_the_package(onnx_014):
    assert onnx_014.input_size == 32 and onnx_014.num_classes == 3
    assert onnx_014.label_values == [0, 1, 4] and onnx_014.slice_axis == 0
    assert onnx_014.providers == ["CPUExecutionProvider"] and onnx_014.threads == 1
    logits = onnx_014.logits(np.zeros((2, 1, 32, 32), np.float32))
    assert logits.shape == (2, 3, 32, 32) and logits.dtype == np.float32
    with pytest.raises(ValueError, match=r"\(B, 1, 32, 32\)"):
        onnx_014.logits(np.zeros((2, 32, 32), np.float32))


def test_labels_are_values_with_the_volume_shape(onnx_014):
    volume = make_volume()
    labels = segment_volume(onnx_014, volume, batch_size=3)
    assert labels.shape == volume.shape and labels.dtype == np.uint8
    assert set(np.unique(labels)) == {0, 1, 4}  # channel 2 is written as value 4


def test_matches_a_torch_reference_on_an_anisotropic_volume(package_axis1):
    folder, model = package_axis1
    package = StudentPackage.load(folder)
    volume = make_volume((9, 23, 61), seed=3)  # slices along axis 1 are 9 x 61: resized up and down
    reference = torch_reference(model, volume, values=[0, 1, 4], input_size=32, axis=1,
                                normalization=package.normalization)
    torch_model = TorchSliceModel.from_package(package)
    np.testing.assert_array_equal(segment_volume(torch_model, volume, batch_size=4), reference)
    onnx = segment_volume(OnnxSegmenter(package, threads=1), volume, batch_size=4)
    assert np.mean(onnx == reference) > 0.999  # ONNX vs torch: only float32 near-ties may differ
    assert set(np.unique(reference)) == {0, 1, 4}


def test_volume_segmenter_slices_equal_the_volume_result(onnx_014):
    volume = make_volume((6, 30, 44), seed=1)
    whole = segment_volume(onnx_014, volume, batch_size=1)
    live = VolumeSegmenter(onnx_014, volume)
    assert live.num_slices == 6 and live.normalization.resolved
    for index in range(6):
        np.testing.assert_array_equal(live.segment_slice(index), whole[index])
    with pytest.raises(ValueError, match="outside"):
        live.segment_slice(6)


def test_batch_size_does_not_change_the_result(onnx_014):
    volume = make_volume((5, 20, 24), seed=2)
    one = segment_volume(onnx_014, volume, batch_size=1)
    np.testing.assert_array_equal(segment_volume(onnx_014, volume, batch_size=16), one)


def test_roi_segments_the_box_with_whole_volume_statistics(onnx_014):
    volume = make_volume((8, 30, 40), seed=4)
    whole = segment_volume(onnx_014, volume)
    roi = ((2, 6), (None, None), (0, 40))
    boxed = segment_volume(onnx_014, volume, roi=roi)
    box = resolve_roi(roi, volume.shape)
    np.testing.assert_array_equal(boxed[box], whole[box])  # same statistics, same slices
    outside = np.ones(volume.shape, bool)
    outside[box] = False
    assert not boxed[outside].any()
    # a box inside the slices changes their content: only its own pixels are segmented
    inner = segment_volume(onnx_014, volume, roi=((0, 8), (5, 25), (10, 30)))
    assert inner.shape == volume.shape and not inner[:, :5].any() and not inner[:, :, 30:].any()
    with pytest.raises(ValueError, match="empty range"):
        segment_volume(onnx_014, volume, roi=((3, 3), (0, 30), (0, 40)))
    with pytest.raises(ValueError, match="3 .start, end. pairs"):
        segment_volume(onnx_014, volume, roi=((0, 3), (0, 30)))


def test_2d_images_and_single_slice_volumes(onnx_014):
    image = make_volume((1, 37, 45), seed=5)
    as_volume = segment_volume(onnx_014, image)
    flat = segment_volume(onnx_014, image[0])
    assert flat.shape == (37, 45) and flat.dtype == np.uint8
    np.testing.assert_array_equal(as_volume[0], flat)
    # a 2D image stored along another axis is sliced along its single-voxel axis
    assert effective_axis((37, 1, 45), 0) == 1 and effective_axis((5, 6, 7), 2) == 2
    np.testing.assert_array_equal(segment_volume(onnx_014, image[0][:, None, :])[:, 0, :], flat)


def test_progress_and_cancel(onnx_014):
    volume = make_volume((5, 16, 16))
    seen = []
    segment_volume(onnx_014, volume, batch_size=2, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 5), (4, 5), (5, 5)]
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(CancelledError):
        segment_volume(onnx_014, volume, batch_size=2, cancel=cancel)


def test_large_label_values_give_uint16(tmp_path):
    folder, _ = make_package(tmp_path / "pkg", values=(0, 300))
    labels = segment_volume(OnnxSegmenter(folder, threads=1), make_volume((3, 20, 20)))
    assert labels.dtype == np.uint16 and set(np.unique(labels)) <= {0, 300}


class _Constant:
    """A SliceModel whose logits favour class 2 on the left half and class 1 on the right half."""

    input_size, num_classes, label_values, slice_axis = 16, 3, [0, 7, 9], 0
    normalization = NormalizationSpec(mode="none")

    def logits(self, batch):
        out = np.zeros((batch.shape[0], 3, 16, 16), np.float32)
        out[:, 2, :, :8] = 1.0
        out[:, 1, :, 8:] = 1.0
        return out


def test_any_slice_model_works_and_memory_stays_per_batch():
    import tracemalloc

    volume = np.zeros((400, 128, 128), np.int16)
    tracemalloc.start()
    try:
        labels = segment_volume(_Constant(), volume, batch_size=4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert set(np.unique(labels[:, :, :64])) == {9} and set(np.unique(labels[:, :, 64:])) == {7}
    # besides the output (6.5 MB), a few slices (about 3 MB): far below a float32 copy of the volume (26 MB)
    assert peak - labels.nbytes < volume.size * 4 / 4, peak
