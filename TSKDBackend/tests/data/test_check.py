"""tskd.data.check: reading every pixel, the report and its text form."""

from __future__ import annotations

import gzip
import json

import numpy as np
from tests.data.datamaker import folder_dataset, label_for, volume, write

from tskd.data.check import check_dataset, format_report
from tskd.data.dataset import load_dataset


def test_report_of_a_good_dataset(tmp_path):
    folder_dataset(tmp_path, 3)
    write(tmp_path / "unlabelled" / "u.nii.gz", volume((6, 10, 14)), spacing=(0.5, 0.8, 3.0))
    report = check_dataset(tmp_path)
    assert report.usable and report.layout == "folders" and report.dimension == 3
    assert (report.n_cases, report.n_labelled, report.n_unlabelled, report.n_excluded) == (4, 3, 1, 0)
    assert report.n_subjects == 3
    assert report.sizes["min"] == [12, 10, 6] and report.sizes["max"] == [14, 10, 6]
    assert report.sizes["common"][0] == [[12, 10, 6], 3]
    assert report.spacing == {"min": [0.5, 0.8, 2.0], "median": [0.8, 0.8, 2.0], "max": [0.8, 0.8, 3.0]}
    assert report.label_values == [0, 1, 2] and report.label_cases == {0: 3, 1: 3, 2: 3}
    assert report.label_names == {0: "background", 1: "label_1", 2: "label_2"}
    assert report.pixel_types == {"16-bit signed integer": 4} and report.problems == []
    text = format_report(report)
    assert "Cases:     4 usable (3 labelled, 1 unlabelled)" in text
    assert "Size:      12 x 10 x 6 to 14 x 10 x 6 voxels" in text
    assert "      1  label_1                  in 3 labelled cases" in text
    assert "Result:    USABLE: 3 labelled cases can be used for training" in text
    json.dumps(report.to_dict())  # serialisable as it is


def test_pixel_problems_are_found_only_when_pixels_are_read(tmp_path):
    folder_dataset(tmp_path, 5)
    raw = gzip.decompress((tmp_path / "images" / "case_1.nii.gz").read_bytes())
    (tmp_path / "images" / "case_1.nii.gz").write_bytes(gzip.compress(raw[:-50]))  # truncated pixels
    bad = volume().astype(np.float32)
    bad[0, 0, 0] = np.nan
    (tmp_path / "images" / "case_2.nii.gz").unlink()
    write(tmp_path / "images" / "case_2.nrrd", bad, spacing=(0.8, 0.8, 2.0))  # NIfTI I/O turns NaN into 0
    write(tmp_path / "images" / "case_3.nii.gz", np.full((6, 10, 12), 7, np.int16), spacing=(0.8, 0.8, 2.0))
    write(tmp_path / "labels" / "case_4.nii.gz", np.zeros((6, 10, 12), np.uint8), spacing=(0.8, 0.8, 2.0))
    assert len(load_dataset(tmp_path).cases) == 5  # headers are fine
    headers = check_dataset(tmp_path, read_pixels=False)
    assert headers.usable and headers.n_labelled == 5 and headers.label_values == []
    assert "Note:      headers only" in format_report(headers)
    report = check_dataset(tmp_path)
    assert report.usable and report.n_labelled == 3 and report.n_excluded == 2
    errors = [(p.path.name, p.message) for p in report.errors]
    assert errors[0][0] == "case_1.nii.gz" and "truncated file" in errors[0][1] and errors[0][1].endswith("(case left out)")
    assert errors[1] == ("case_2.nrrd", "the image has 1 NaN or infinite values; fix or remove them (case left out)")
    warnings = [(p.path.name, p.message) for p in report.warnings]
    assert ("case_3.nii.gz", "every pixel has the same value (7); the image carries no information") in warnings
    assert ("case_4.nii.gz", "the label is empty (background only); it is used as an example without any structure") in warnings
    assert report.label_cases == {0: 3, 1: 2, 2: 2}


def test_unusable_dataset_report(tmp_path):
    (tmp_path / "stuff").mkdir()
    report = check_dataset(tmp_path)
    assert not report.usable and "no images/ (or imagesTr/) folder found" in report.fatal[0]
    assert format_report(report).splitlines()[-1].startswith("Result:    NOT USABLE: ")
    folder_dataset(tmp_path / "two", 1)
    write(tmp_path / "two" / "images" / "flat.png", (volume((10, 12)) % 256).astype(np.uint8))
    write(tmp_path / "two" / "labels" / "flat.png", label_for((10, 12), (1,)))
    report = check_dataset(tmp_path / "two")
    assert not report.usable and report.fatal[0].startswith("2D and 3D images are mixed")
    assert report.n_labelled == 2  # the cases themselves are fine; their mixture is not
