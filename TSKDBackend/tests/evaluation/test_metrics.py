from __future__ import annotations

import math

import numpy as np
import pytest

from tskd.evaluation import case_metrics, summarize_metrics


def cube(shape, lo, hi, value=1):
    a = np.zeros(shape, np.uint8)
    a[tuple(slice(l, h) for l, h in zip(lo, hi))] = value
    return a


def test_identical_maps_are_perfect():
    ref = cube((20, 20, 20), (5, 5, 5), (15, 15, 15))
    m = case_metrics(ref, ref, labels=[1], spacing=(1, 1, 1))
    assert m.dice[1] == pytest.approx(1.0)
    assert m.hd95_mm[1] == 0.0 and m.assd_mm[1] == 0.0


def test_shift_is_measured_in_millimetres():
    ref = cube((20, 20, 40), (5, 5, 5), (15, 15, 15))
    pred = cube((20, 20, 40), (5, 5, 7), (15, 15, 17))  # shifted 2 voxels along the last numpy axis
    iso = case_metrics(pred, ref, labels=[1], spacing=(1, 1, 1))
    aniso = case_metrics(pred, ref, labels=[1], spacing=(1, 1, 2.5))
    assert iso.dice[1] == pytest.approx(2 * 8 / 20)
    assert iso.hd95_mm[1] == pytest.approx(2.0)
    assert aniso.hd95_mm[1] == pytest.approx(5.0)
    assert aniso.assd_mm[1] > iso.assd_mm[1]


def test_missing_classes_follow_the_documented_convention():
    ref = cube((10, 10), (2, 2), (6, 6))
    empty = np.zeros_like(ref)
    both_absent = case_metrics(ref, ref, labels=[1, 2], spacing=(1, 1))
    assert both_absent.dice[2] == 1.0 and both_absent.hd95_mm[2] == 0.0
    missed = case_metrics(empty, ref, labels=[1], spacing=(1, 1))
    assert missed.dice[1] == 0.0 and math.isnan(missed.hd95_mm[1])
    summary = summarize_metrics([missed, both_absent], {1: "organ"})
    assert summary["per_class"]["1"]["name"] == "organ"
    assert summary["per_class"]["1"]["dice"] == pytest.approx(0.5)
    assert summary["per_class"]["1"]["hd95_mm_n_undefined"] == 1
    assert summary["per_class"]["1"]["hd95_mm"] == 0.0


def test_shape_and_spacing_errors():
    with pytest.raises(ValueError, match="shape"):
        case_metrics(np.zeros((3, 3)), np.zeros((3, 4)), labels=[1], spacing=(1, 1))
    with pytest.raises(ValueError, match="spacing"):
        case_metrics(np.zeros((3, 3)), np.zeros((3, 3)), labels=[1], spacing=(1, 1, 1))
