"""Integration: every real case goes through what training and prediction do to it — read, slice
along the chosen axis, resample to the model size and back, stack, write — and the written label
map overlays its input exactly."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import shared_dataset

from tskd.cli.main import main
from tskd.data.dataset import load_dataset
from tskd.data.image import read_image, write_image
from tskd.preprocess import choose_slice_axis, resize_bilinear, resize_nearest, slices_along, stack_slices

pytestmark = pytest.mark.shared_data

SIZE = 64


def slice_resample_write(image, label, folder, name):
    axis = choose_slice_axis(image.geometry.spacing) if image.dimension == 3 else 0
    volume = image.array[None] if image.dimension == 2 else image.array
    labels = label.array[None] if label.dimension == 2 else label.array
    axis_in_volume = axis if image.dimension == 3 else 0
    image_slices = slices_along(volume.astype(np.float32), axis_in_volume)
    label_slices = slices_along(labels, axis_in_volume)
    height, width = label_slices.shape[1:]
    small_images = resize_bilinear(image_slices, (SIZE, SIZE))
    assert np.isfinite(small_images).all() and small_images.shape == (len(image_slices), SIZE, SIZE)
    back = resize_nearest(resize_nearest(label_slices, (SIZE, SIZE)), (height, width))
    stacked = stack_slices(back, axis_in_volume, labels.shape)
    stacked = stacked[0] if image.dimension == 2 else stacked
    written = read_image(write_image(label.with_array(stacked.astype(np.uint8)), folder / f"{name}.nii.gz"),
                         kind="label")
    assert written.geometry.mismatch(image.geometry, tolerance=1e-6) is None, name
    assert written.array.shape == image.array.shape
    return float((written.array == label.array).mean())


@pytest.mark.parametrize("name, expected", [("hippocampus", 176), ("hc18", 675)])
def test_every_case_round_trips_in_place(name, expected, tmp_path):
    dataset = load_dataset(shared_dataset(name), subject_pattern=r"^(\d{3})" if name == "hc18" else None)
    assert len(dataset.labelled) == expected
    agreement = []
    for case in dataset.labelled:
        image, label = dataset.read_case(case)
        agreement.append(slice_resample_write(image, label, tmp_path, case.case_id))
    # the geometry is exact (checked per case above); the voxels only lose what nearest-neighbour
    # resampling to 64 px and back loses at label edges
    assert min(agreement) > (0.97 if name == "hippocampus" else 0.95), min(agreement)


def test_totalsegmentator_ct_round_trips_in_place(tmp_path):
    root = shared_dataset("totalseg_ct")
    image = read_image(root / "example_ct_sm.nii.gz")
    label = read_image(root / "example_seg.nii.gz", kind="label")
    assert choose_slice_axis(image.geometry.spacing) == 0  # 3 mm isotropic: ties go to the axial axis
    assert slice_resample_write(image, label, tmp_path, "ct") > 0.85  # 100+ small structures at 64 px


@pytest.mark.parametrize("name, count", [("hippocampus", 176), ("hc18", 675)])
def test_data_check_command_reports_the_cases(name, count, capsys):
    assert main(["data", "check", str(shared_dataset(name))]) == 0
    out = capsys.readouterr().out
    assert f"{count} usable ({count} labelled, 0 unlabelled)" in out
    assert "USABLE" in out
