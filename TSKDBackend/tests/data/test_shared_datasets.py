"""Integration: the real datasets in ../shared/data read as their owners would hand them over."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import shared_dataset

from tskd.data.check import check_dataset, format_report
from tskd.data.dataset import load_dataset
from tskd.data.image import read_image, write_image
from tskd.data.split import subject_split

pytestmark = pytest.mark.shared_data


def round_trip(image, folder, kind="label"):
    """Write ``image`` as .nii.gz, .nrrd and .seg.nrrd and read it back: same values, same place."""
    for suffix in (".nii.gz", ".nrrd", ".seg.nrrd") if kind == "label" else (".nii.gz", ".nrrd"):
        back = read_image(write_image(image, folder / f"rt{suffix}"), kind=kind)
        if back.dimension == 3 and image.dimension == 2:  # a seg.nrrd is always a volume
            assert back.array.shape[0] == 1
            back_array, back_geometry = back.array[0], back.geometry
            assert back_geometry.spacing[:2] == image.geometry.spacing and back_geometry.origin[:2] == image.geometry.origin
        else:
            back_array = back.array
            assert image.geometry.mismatch(back.geometry, tolerance=1e-6) is None, suffix
        assert np.array_equal(back_array, image.array), suffix


def test_hippocampus(tmp_path):
    root = shared_dataset("hippocampus")
    report = check_dataset(root)
    assert report.usable and report.layout == "msd" and report.dimension == 3, format_report(report)
    assert (report.n_cases, report.n_labelled, report.n_unlabelled, report.n_excluded) == (176, 176, 0, 0)
    assert report.label_values == [0, 1, 2] and report.problems == []
    assert report.spacing["min"] == report.spacing["max"] == [1.0, 1.0, 1.0]
    dataset = load_dataset(root)
    for case in dataset.cases:  # every case, as training will read it
        image, label = dataset.read_case(case)
        assert label.geometry == image.geometry and image.array.shape == label.array.shape
        assert set(np.unique(label.array)) <= {0, 1, 2} and label.array.dtype == np.uint8
    for case in dataset.cases[:10]:
        image, label = dataset.read_case(case)
        round_trip(label, tmp_path)
        round_trip(image, tmp_path, kind="image")
    train, val = subject_split(dataset.cases, val_fraction=0.2, seed=0)
    assert len(train) + len(val) == 176 and len(val) == round(0.2 * 176)


def test_hc18(tmp_path):
    root = shared_dataset("hc18")
    report = check_dataset(root, subject_pattern=r"^(\d{3})")
    assert report.usable and report.dimension == 2, format_report(report)
    assert (report.n_cases, report.n_labelled, report.n_unlabelled, report.n_excluded) == (675, 675, 0, 0)
    assert report.label_values == [0, 1] and report.label_cases == {0: 675, 1: 675}
    assert report.spacing_source == "pixel_size_and_hc.csv" and report.problems == []
    assert 0.04 < report.spacing["min"][0] < report.spacing["max"][0] < 0.5
    assert report.n_subjects < 675  # 014_HC and 014_2HC are one subject
    dataset = load_dataset(root, subject_pattern=r"^(\d{3})")
    assert dataset.case("014_2HC").subject_id == dataset.case("014_HC").subject_id == "014"
    train, val = subject_split(dataset.cases, seed=0)
    assert {c.subject_id for c in train}.isdisjoint({c.subject_id for c in val})
    for case in dataset.cases[::25]:
        image, label = dataset.read_case(case)
        assert set(np.unique(label.array)) == {0, 1} and label.geometry == image.geometry
        assert image.geometry.spacing == case.spacing_override and image.array.dtype == np.uint8
        round_trip(label, tmp_path)


def test_totalsegmentator_ct_with_a_manifest(tmp_path):
    root = shared_dataset("totalseg_ct")
    manifest = tmp_path / "cases.csv"
    manifest.write_text(
        "image,label\n"
        f"{root / 'example_ct_sm.nii.gz'},{root / 'example_seg.nii.gz'}\n"
        f"{root / 'example_ct.nii.gz'},\n"
        f"{root / 'example_mr_sm.nii.gz'},\n"
    , encoding="utf-8")
    report = check_dataset(manifest)
    assert report.usable and (report.n_labelled, report.n_unlabelled) == (1, 2), format_report(report)
    assert len(report.label_values) > 40 and report.label_values[0] == 0 and report.problems == []
    dataset = load_dataset(manifest)
    image, label = dataset.read_case(dataset.labelled[0])
    assert image.array.shape == label.array.shape == (30, 101, 122)
    assert np.allclose(image.geometry.spacing, 3.0) and image.geometry.direction[0] == -1.0
    round_trip(label, tmp_path)
    round_trip(image, tmp_path, kind="image")
    for case in dataset.unlabelled:
        assert dataset.read_case(case)[1] is None
