"""Label tables (dataset.json, labels.json, segments, defaults) and mask folding."""

from __future__ import annotations

import numpy as np
import pytest
from tests.data.datamaker import write_json

from tskd.data.folding import LabelFold, fold_label_array, mask_values, plan_fold
from tskd.data.labels import DEFAULT_PALETTE, Label, LabelTable, default_color, parse_color, read_subject_pattern
from tskd.errors import DataError


def test_msd_dataset_json(tmp_path):
    path = write_json(tmp_path / "dataset.json", {"name": "Hippocampus", "labels": {"0": "background", "1": "Anterior", "2": "Posterior"}})
    table = LabelTable.from_dataset_json(path)
    assert table.values == [0, 1, 2] and table.names == ["background", "Anterior", "Posterior"]
    assert table.source == "dataset.json" and table.declared and table.num_classes == 3


def test_nnunet_v2_inverted_labels_skip_regions(tmp_path):
    path = write_json(tmp_path / "dataset.json", {"labels": {"background": 0, "liver": 1, "tumour": 2, "whole": [1, 2]}})
    table = LabelTable.from_dataset_json(path)
    assert table.values == [0, 1, 2] and table.name_of(2) == "tumour" and table.value_of("LIVER") == 1


def test_dataset_json_without_labels(tmp_path):
    with pytest.raises(DataError, match=r"dataset\.json: has no \"labels\" field"):
        LabelTable.from_dataset_json(write_json(tmp_path / "dataset.json", {"name": "x"}))
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.json: is not valid JSON"):
        LabelTable.from_dataset_json(tmp_path / "broken.json")


@pytest.mark.parametrize("content", [
    {"labels": {"1": "liver", "2": {"name": "spleen", "color": [0, 128, 255]}}, "subject_pattern": "^(\\d+)"},
    {"1": "liver", "2": {"name": "spleen", "color": "#0080ff"}},
    [{"value": 1, "name": "liver"}, {"value": 2, "name": "spleen", "color": [0.0, 0.50196, 1.0]}],
])
def test_labels_json_forms(tmp_path, content):
    path = write_json(tmp_path / "labels.json", content)
    table = LabelTable.from_labels_json(path)
    assert table.values == [0, 1, 2] and table.names == ["background", "liver", "spleen"]
    assert np.allclose(table.colors()[2], (0, 128 / 255, 1.0), atol=1e-3) and 1 not in table.colors()
    expected = "^(\\d+)" if isinstance(content, dict) and "subject_pattern" in content else None
    assert read_subject_pattern(path) == expected


def test_labels_json_list_of_names_and_errors(tmp_path):
    table = LabelTable.from_labels_json(write_json(tmp_path / "a.json", ["background", "head"]))
    assert table.values == [0, 1] and table.name_of(1) == "head"
    with pytest.raises(DataError, match=r"b\.json: labels\['1'\]\.color: colour \[300, 0, 0\] has values outside 0\.\.255"):
        LabelTable.from_labels_json(write_json(tmp_path / "b.json", {"1": {"name": "x", "color": [300, 0, 0]}}))
    with pytest.raises(DataError, match="label value 1.5 is not a whole number"):
        LabelTable.from_labels_json(write_json(tmp_path / "c.json", [{"value": 1.5, "name": "x"}]))
    with pytest.raises(DataError, match="declared twice"):
        LabelTable.from_labels_json(write_json(tmp_path / "d.json", [{"value": 1, "name": "x"}, {"value": 1, "name": "y"}]))


def test_table_basics_and_round_trip():
    table = LabelTable([Label(3, "c"), Label(1, "a", (1.0, 0.0, 0.0))], source="test")
    assert table.values == [0, 1, 3] and table.foreground_values == [1, 3]
    assert table.check_values([0, 1, 2, 3, 7]) == [2, 7]
    indices = table.to_indices(np.array([[0, 3], [1, 3]]))
    assert indices.tolist() == [[0, 2], [1, 2]] and indices.dtype == np.int64
    assert table.from_indices(indices).tolist() == [[0, 3], [1, 3]]
    with pytest.raises(ValueError, match=r"label values \[2\] are not in the label table"):
        table.to_indices(np.array([0, 2]))
    assert LabelTable.from_dict(table.to_dict()) == table
    assert 3 in table and 2 not in table and len(table) == 3
    with pytest.raises(ValueError, match=">= 0"):
        LabelTable([Label(-1, "neg")])


def test_default_and_segments_tables():
    table = LabelTable.default({2, 0, 1})
    assert table.names == ["background", "label_1", "label_2"] and not table.declared
    segments = [{"name": "liver", "label_value": 1, "color": [1, 0, 0]}, {"name": "kidney", "label_value": 3}]
    table = LabelTable.from_segments(segments)
    assert table.values == [0, 1, 3] and table.name_of(3) == "kidney" and table.colors() == {1: (1, 0, 0)}


def test_palette_is_deterministic_and_distinct():
    colours = [default_color(v) for v in range(1, 40)]
    assert colours[: len(DEFAULT_PALETTE)] == list(DEFAULT_PALETTE)
    assert len(set(colours)) == len(colours) and default_color(0) == (0.0, 0.0, 0.0)
    assert parse_color("#ff8000") == (1.0, 128 / 255, 0.0)
    assert parse_color([255, 0, 0]) == (1.0, 0.0, 0.0) and parse_color([1, 1, 1]) == (1 / 255,) * 3


# -- folding ----------------------------------------------------------------------------------

def rgb_mask(colours):
    """A 4x4 RGB mask: pixel rows painted with the given colours, the rest black."""
    mask = np.zeros((4, 4, 3), np.uint8)
    for row, colour in enumerate(colours):
        mask[row, :2] = colour
    return mask


def test_hc18_style_rgb_0_255_gives_0_1():
    mask = rgb_mask([(255, 255, 255)])
    labels, info = fold_label_array(mask, channels=True)
    assert set(np.unique(labels)) == {0, 1} and labels.sum() == 2 and info["rgb_folded"] == {"255,255,255": 1}
    assert "fold_guessed" not in info


def test_grey_single_value_folds_unless_declared():
    grey = np.array([[0, 128], [128, 0]], np.uint8)
    labels, info = fold_label_array(grey, channels=False)
    assert labels.tolist() == [[0, 1], [1, 0]] and info == {"values_folded": {"128": 1}, "fold_guessed": True}
    declared = LabelTable([Label(128, "bright")])
    assert fold_label_array(grey, channels=False, table=declared)[0].tolist() == [[0, 128], [128, 0]]
    single = LabelTable([Label(3, "head")])
    assert fold_label_array(grey, channels=False, table=single)[0].tolist() == [[0, 3], [3, 0]]
    multi = np.array([[0, 1], [2, 0]], np.uint8)
    assert fold_label_array(multi, channels=False)[0].tolist() == [[0, 1], [2, 0]]


def test_colours_use_declared_colours_then_palette_then_sorted_order():
    red, blue = (230, 26, 26), (38, 89, 230)  # palette colours 1 and 3
    declared = LabelTable([Label(1, "vessel", (38 / 255, 89 / 255, 230 / 255)), Label(2, "tumour", (230 / 255, 26 / 255, 26 / 255))])
    labels, info = fold_label_array(rgb_mask([red, blue]), channels=True, table=declared)
    assert labels[0, 0] == 2 and labels[1, 0] == 1 and info["rgb_folded"] == {"38,89,230": 1, "230,26,26": 2}
    labels, info = fold_label_array(rgb_mask([red, blue]), channels=True)  # palette: red=1, blue=3
    assert labels[0, 0] == 1 and labels[1, 0] == 3 and "fold_guessed" not in info
    labels, info = fold_label_array(rgb_mask([(200, 0, 0), (0, 200, 0)]), channels=True)  # sorted: green first
    assert labels[1, 0] == 1 and labels[0, 0] == 2 and info["fold_guessed"] is True


def test_alpha_and_grey_alpha_masks():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 255, 255, 255)
    rgba[1, 1] = (255, 255, 255, 0)  # transparent: background
    labels, _ = fold_label_array(rgba, channels=True)
    assert labels.tolist() == [[1, 0], [0, 0]]
    grey_alpha = np.array([[[0, 255], [255, 255]]], np.uint8)
    assert fold_label_array(grey_alpha, channels=True)[0].tolist() == [[0, 1]]


def test_dataset_wide_fold_keeps_colours_consistent_across_files():
    a = rgb_mask([(200, 0, 0)])
    b = rgb_mask([(0, 200, 0)])
    grey_a, colours_a = mask_values(a, channels=True)
    grey_b, colours_b = mask_values(b, channels=True)
    fold = plan_fold(grey_a | grey_b, colours_a | colours_b)
    assert fold_label_array(a, channels=True, fold=fold)[0].max() == 2
    assert fold_label_array(b, channels=True, fold=fold)[0].max() == 1
    with pytest.raises(DataError, match=r"colour \(0,0,200\) is not one of the dataset's label colours"):
        fold_label_array(rgb_mask([(0, 0, 200)]), channels=True, fold=fold, where="c.png")
    assert LabelFold(values={255: 1}).map_values({0, 255}, set()) == {0, 1}
