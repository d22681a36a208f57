"""Keeping the largest connected component (tskd.runtime.postprocess) and segment_volume applying a
package's choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.runtime.packages import make_package, make_volume
from tskd.runtime import OnnxSegmenter, PackageError, StudentPackage, apply_postprocessing, segment_volume


def _islands() -> np.ndarray:
    """A 3D map: one structure of two touching classes (1 and 2), an island of class 2 and an island
    of class 1 elsewhere, and a corner voxel of class 1 (the bounding box reaches the array's edge)."""
    label = np.zeros((8, 12, 14), np.uint8)
    label[2:6, 2:7, 2:6] = 1
    label[2:6, 2:7, 6:9] = 2  # touches class 1: one foreground component
    label[6:8, 9:12, 11:14] = 2  # an island of class 2 (12 voxels)
    label[0, 0, 0] = 1  # an island of class 1 in the corner
    return label


def test_none_gives_the_map_itself():
    label = _islands()
    assert apply_postprocessing(label, "none", [1, 2]) is label


def test_largest_foreground_keeps_the_one_structure_with_both_classes():
    label = _islands()
    out = apply_postprocessing(label, "largest_foreground", [1, 2])
    expected = label.copy()
    expected[6:8, 9:12, 11:14] = 0
    expected[0, 0, 0] = 0
    assert out.dtype == label.dtype and np.array_equal(out, expected)
    assert np.array_equal(label, _islands())  # the input is not changed


def test_largest_per_class_keeps_each_class_largest_part():
    label = _islands()
    label[2:6, 2:7, 6:9] = 0  # class 2 keeps only its 12-voxel island
    label[0:2, 0:3, 8:12] = 2  # 24 voxels: the largest part of class 2 moves here
    out = apply_postprocessing(label, "largest_per_class", [1, 2])
    expected = np.zeros_like(label)
    expected[2:6, 2:7, 2:6] = 1
    expected[0:2, 0:3, 8:12] = 2
    assert np.array_equal(out, expected)


def test_components_are_face_connected_and_2d_maps_work():
    image = np.zeros((6, 6), np.uint8)
    image[0:2, 0:2] = 1
    image[2:5, 2:5] = 1  # touches the first square only at a corner: a second component (9 pixels)
    out = apply_postprocessing(image, "largest_foreground", [1])
    expected = np.zeros_like(image)
    expected[2:5, 2:5] = 1
    assert np.array_equal(out, expected)


def test_an_empty_map_and_a_single_component_are_unchanged():
    empty = np.zeros((3, 4, 5), np.uint16)
    assert np.array_equal(apply_postprocessing(empty, "largest_foreground", [300]), empty)
    one = np.zeros((3, 4, 5), np.uint16)
    one[1, 1:3, 1:4] = 300
    assert np.array_equal(apply_postprocessing(one, "largest_per_class", [300]), one)


def test_an_unknown_method_names_the_known_ones():
    with pytest.raises(ValueError, match=r"none, largest_foreground, largest_per_class, got 'biggest'"):
        apply_postprocessing(_islands(), "biggest", [1, 2])


def _with_postprocessing(folder, value):
    meta_path = folder / "tskd-model.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["postprocessing"] = value
    meta_path.write_text(json.dumps(meta), encoding="utf-8")


def test_a_package_without_the_field_post_processes_nothing(package_014):
    package = StudentPackage.load(package_014[0])
    assert package.postprocessing == "none"
    assert OnnxSegmenter(package, threads=1).postprocessing == "none"


def test_a_package_with_a_bad_method_is_refused_naming_the_field(tmp_path):
    folder, _ = make_package(tmp_path / "pkg")
    _with_postprocessing(folder, {"method": "biggest"})
    with pytest.raises(PackageError, match=r"tskd-model.json: postprocessing.method must be one of .*update of tskd"):
        StudentPackage.load(folder)
    _with_postprocessing(folder, "largest_foreground")
    with pytest.raises(PackageError, match=r"field 'postprocessing' must be a mapping"):
        StudentPackage.load(folder)


def test_segment_volume_applies_the_package_choice_within_the_roi(tmp_path):
    folder, _ = make_package(tmp_path / "pkg", values=(0, 1, 4))
    volume = make_volume((7, 40, 52), seed=3)
    raw_model = OnnxSegmenter(folder, threads=1)
    raw = segment_volume(raw_model, volume)
    kept = apply_postprocessing(raw, "largest_per_class", [1, 4])
    assert not np.array_equal(raw, kept), "the untrained model's map must have islands for this test to mean anything"

    _with_postprocessing(folder, {"method": "largest_per_class", "decided_on": "test"})
    model = OnnxSegmenter(folder, threads=1)
    assert model.postprocessing == "largest_per_class"
    assert np.array_equal(segment_volume(model, volume), kept)
    assert np.array_equal(segment_volume(model, volume, postprocessing="none"), raw)

    roi = ((1, 6), (5, 30), (10, 45))
    box = tuple(slice(a, b) for a, b in roi)
    in_roi = segment_volume(model, volume, roi=roi)
    assert np.array_equal(in_roi[box], apply_postprocessing(segment_volume(raw_model, volume, roi=roi)[box],
                                                            "largest_per_class", [1, 4]))
    outside = np.ones(volume.shape, bool)
    outside[box] = False
    assert not in_roi[outside].any()
