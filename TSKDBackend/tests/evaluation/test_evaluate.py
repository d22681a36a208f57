"""evaluate_files: pairing by case name, geometry checks, spacing in mm, label names, CSV/JSON files."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from tests.data.datamaker import write, write_json
from tskd.data.image import Geometry, Image, write_image
from tskd.errors import DataError
from tskd.evaluation.evaluate import evaluate_files, format_table, pair_cases

SPACING = (0.5, 1.0, 4.0)  # ITK (i, j, k): numpy axes get (4.0, 1.0, 0.5)
SHAPE = (10, 20, 24)


def box(lo, hi, value=1, shape=SHAPE):
    array = np.zeros(shape, np.uint8)
    array[tuple(slice(a, b) for a, b in zip(lo, hi))] = value
    return array


def test_pairs_by_case_name_whatever_the_suffixes(tmp_path):
    for name in ("a.nii.gz", "b_seg.nrrd", "c.mha", "extra.nii.gz"):
        write(tmp_path / "pred" / name, box((1, 1, 1), (3, 3, 3)))
    for name in ("a.seg.nrrd", "b.nii.gz", "c_label.nii.gz", "d.nii.gz"):
        write(tmp_path / "ref" / name, box((1, 1, 1), (3, 3, 3)))
    pairs, unmatched, missing = pair_cases(tmp_path / "pred", tmp_path / "ref")
    assert [(c, p.name, r.name) for c, p, r in pairs] == [
        ("a", "a.nii.gz", "a.seg.nrrd"), ("b", "b_seg.nrrd", "b.nii.gz"), ("c_label", "c.mha", "c_label.nii.gz")]
    assert [p.name for p in unmatched] == ["extra.nii.gz"] and [p.name for p in missing] == ["d.nii.gz"]


def test_metrics_use_the_spacing_and_files_are_written(tmp_path):
    ref = box((2, 5, 4), (6, 15, 20)) + box((7, 2, 2), (9, 6, 6), value=2)
    pred = box((2, 5, 6), (6, 15, 22))  # label 1 shifted by 2 voxels along i (0.5 mm): 1 mm; label 2 missed
    write(tmp_path / "ref" / "case.nii.gz", ref, SPACING)
    write(tmp_path / "pred" / "case.nii.gz", pred, SPACING)
    write_json(tmp_path / "labels.json", {"labels": {"0": "background", "1": "liver", "2": "spleen", "3": "kidney"}})
    report = evaluate_files(tmp_path / "pred", tmp_path / "ref", labels=tmp_path / "labels.json", out=tmp_path / "eval")
    (case,) = report.cases
    assert case.dice[1] == pytest.approx(2 * (16 - 2) / 32)
    assert case.hd95_mm[1] == pytest.approx(1.0)  # 2 voxels x 0.5 mm: the spacing of numpy axis 2 is i's
    assert case.dice[2] == 0.0 and math.isnan(case.hd95_mm[2])
    assert case.dice[3] == 1.0  # declared, absent from both
    assert report.label_names == {1: "liver", 2: "spleen", 3: "kidney"} and report.label_source == "labels.json"
    rows = list(csv.DictReader((tmp_path / "eval" / "metrics.csv").open()))
    assert rows[0] == {"case_id": "case", "label": "1", "name": "liver", "dice": f"{case.dice[1]:.6g}",
                       "hd95_mm": "1", "assd_mm": f"{case.assd_mm[1]:.6g}"}
    assert rows[1]["hd95_mm"] == "" and rows[-1]["case_id"] == "mean" and len(rows) == 6
    data = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert data["cases"][0]["hd95_mm"]["2"] is None and data["summary"]["n_cases"] == 1
    assert data["labels"] == {"1": "liver", "2": "spleen", "3": "kidney"}
    table = format_table(report)
    assert "1 liver" in table and "n/a" in table and table.splitlines()[-2].startswith("mean")


def test_label_names_from_the_reference_dataset_and_defaults(tmp_path):
    dataset = tmp_path / "dataset"
    write(dataset / "images" / "x.nii.gz", np.zeros(SHAPE, np.int16))
    write(dataset / "labels" / "x.nii.gz", box((0, 0, 0), (3, 3, 3), value=5))
    write(tmp_path / "pred" / "x.nii.gz", box((0, 0, 0), (3, 3, 3), value=5))
    report = evaluate_files(tmp_path / "pred", dataset, surface=False)  # the labels/ folder is found
    assert report.label_names == {5: "label_5"} and report.cases[0].dice == {5: 1.0}
    assert report.cases[0].hd95_mm == {} and report.files == {}
    write_json(dataset / "labels.json", {"0": "background", "5": "tumour"})
    report = evaluate_files(tmp_path / "pred" / "x.nii.gz", dataset / "labels" / "x.nii.gz")
    assert report.label_names == {5: "tumour"} and report.cases[0].hd95_mm[5] == 0.0


def test_pairs_must_overlay(tmp_path):
    write(tmp_path / "ref.nii.gz", box((1, 1, 1), (3, 3, 3)), SPACING)
    write(tmp_path / "pred.nii.gz", box((1, 1, 1), (3, 3, 3)), SPACING, origin=(5.0, 0.0, 0.0))
    with pytest.raises(DataError, match=r"pred.nii.gz: does not overlay its reference .*ref.nii.gz \(origin"):
        evaluate_files(tmp_path / "pred.nii.gz", tmp_path / "ref.nii.gz")
    write(tmp_path / "p" / "zzz.nii.gz", box((1, 1, 1), (3, 3, 3)))
    write(tmp_path / "r" / "aaa.nii.gz", box((1, 1, 1), (3, 3, 3)))
    with pytest.raises(DataError, match="no prediction in .* has the case name of a reference"):
        evaluate_files(tmp_path / "p", tmp_path / "r")


def test_a_2d_prediction_saved_as_seg_nrrd_scores_against_a_png(tmp_path):
    label = box((3, 4), (10, 12), shape=(16, 20))
    write(tmp_path / "ref" / "us.png", label)
    geometry = Geometry.default(label.shape)
    write_image(Image(label, geometry, metadata={"segments": [{"name": "head", "label_value": 1}]}),
                tmp_path / "pred" / "us.seg.nrrd")
    report = evaluate_files(tmp_path / "pred", tmp_path / "ref")
    assert report.cases[0].dice == {1: 1.0}


def test_pixel_sizes_of_2d_pictures_come_from_the_dataset_csv(tmp_path):
    ref = box((4, 4), (12, 12), shape=(20, 24))
    pred = box((4, 6), (12, 14), shape=(20, 24))  # 2 pixels along i
    write(tmp_path / "dataset" / "masks" / "010_HC.png", ref)
    write(tmp_path / "pred" / "010_HC.png", pred)
    (tmp_path / "dataset" / "pixel_size_and_hc.csv").write_text("filename,pixel size(mm),head circumference (mm)\n"
                                                                "010_HC.png,0.25,100\n", encoding="utf-8")
    report = evaluate_files(tmp_path / "pred", tmp_path / "dataset")
    assert report.cases[0].hd95_mm[1] == pytest.approx(0.5) and report.spacing_source == "pixel_size_and_hc.csv"
