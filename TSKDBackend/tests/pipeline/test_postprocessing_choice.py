"""The export stage chooses a package's post-processing on the validation cases and records it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.runtime.packages import islands_dataset, make_package
from tskd.pipeline.export_stage import choose_postprocessing, validate_package
from tskd.runconfig import ExportConfig, PipelineConfig
from tskd.runtime import OnnxSegmenter, StudentPackage, segment_volume


def _scores(none, **methods):
    """Summaries as score_postprocessing gives them: {method: (mean Dice, {class: Dice})}."""
    out = {}
    for name, (mean, per_class) in {"none": none, **methods}.items():
        out[name] = {"mean_dice": mean, "n_cases": 6,
                     "per_class": {key: {"name": key, "dice": dice} for key, dice in per_class.items()}}
    return out


def test_a_method_is_kept_only_above_the_minimum_gain():
    settings = ExportConfig()
    assert settings.postprocessing == "auto" and settings.postprocessing_min_gain == 0.002
    scores = _scores((0.830, {"1": 0.84, "2": 0.82}), largest_foreground=(0.840, {"1": 0.85, "2": 0.83}),
                     largest_per_class=(0.839, {"1": 0.85, "2": 0.828}))
    choice = choose_postprocessing(scores, settings)
    assert choice["method"] == "largest_foreground" and choice["decided_on"] == "6 validation cases"
    assert choice["val_dice"] == {"none": 0.830, "largest_foreground": 0.840, "largest_per_class": 0.839}
    # HC18's measured case: islands are rare, the methods change the mean by 1e-4
    small = _scores((0.9462, {"1": 0.9462}), largest_foreground=(0.9460, {"1": 0.9460}),
                    largest_per_class=(0.9463, {"1": 0.9463}))
    assert choose_postprocessing(small, settings)["method"] == "none"


def test_a_method_that_costs_one_class_more_than_the_gain_is_refused():
    scores = _scores((0.800, {"1": 0.80, "2": 0.80}), largest_foreground=(0.815, {"1": 0.84, "2": 0.79}))
    assert choose_postprocessing(scores, ExportConfig())["method"] == "none"
    assert choose_postprocessing(scores, ExportConfig(postprocessing_min_gain=0.012))["method"] == "largest_foreground"


def test_undefined_scores_choose_nothing_and_a_set_method_is_kept():
    scores = _scores((math.nan, {"1": math.nan}), largest_foreground=(math.nan, {"1": math.nan}))
    assert choose_postprocessing(scores, ExportConfig())["method"] == "none"
    chosen = choose_postprocessing(_scores((0.9, {"1": 0.9})), ExportConfig(postprocessing="largest_per_class"))
    assert chosen["method"] == "largest_per_class" and chosen["decided_on"] == "set in the config"


def test_the_config_refuses_an_unknown_method_naming_the_field():
    with pytest.raises(Exception, match=r"postprocessing must be auto or one of none, largest_foreground"):
        PipelineConfig.from_dict({"export": {"postprocessing": "biggest"}})
    assert PipelineConfig().export.postprocessing == "auto"


def test_validation_chooses_and_the_package_applies_the_choice(tmp_path):
    folder, _ = make_package(tmp_path / "pkg", values=(0, 1, 4))
    dataset = islands_dataset(tmp_path / "data", OnnxSegmenter(folder, threads=1))
    ids = [case.case_id for case in dataset.labelled]

    summary = validate_package(folder, dataset, ids)
    choice = summary["postprocessing"]
    assert choice["method"] == "largest_foreground" and choice["decided_on"] == "3 validation cases"
    assert choice["val_dice"]["largest_foreground"] == pytest.approx(1.0)
    assert choice["val_dice"]["none"] < 1.0 - 0.002
    assert summary["mean_dice"] == pytest.approx(1.0) and summary["n_cases"] == 3

    # validate_package only chooses; the export stage records the choice in the package's metadata
    from tskd.pipeline.export_stage import _add_metrics

    _add_metrics(folder, summary)
    package = StudentPackage.load(folder)
    assert package.postprocessing == "largest_foreground"
    assert package.metadata["postprocessing"]["val_dice"] == choice["val_dice"]
    assert package.metrics["val_dice"] == pytest.approx(1.0)
    assert "postprocessing" not in package.metrics["volume_validation"]
    image, label = dataset.read_case(dataset.labelled[0])
    assert np.array_equal(segment_volume(OnnxSegmenter(package, threads=1), image.array), label.array)


def test_a_set_method_is_scored_alone(tmp_path):
    folder, _ = make_package(tmp_path / "pkg", values=(0, 1, 4))
    dataset = islands_dataset(tmp_path / "data", OnnxSegmenter(folder, threads=1), n=1)
    summary = validate_package(folder, dataset, [dataset.labelled[0].case_id], ExportConfig(postprocessing="none"))
    assert summary["postprocessing"]["method"] == "none" and list(summary["postprocessing"]["val_dice"]) == ["none"]
    assert summary["mean_dice"] < 1.0
