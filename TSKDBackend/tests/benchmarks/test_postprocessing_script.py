"""benchmarks/postprocessing.py re-scores a finished benchmark folder's packages with the export rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.runtime.packages import islands_dataset, make_package
from tskd.runtime import OnnxSegmenter


@pytest.fixture()
def script(load_benchmark_script):
    return load_benchmark_script("postprocessing")


def _benchmark_folder(tmp_path: Path) -> Path:
    """A finished benchmark's layout: results.json (the data path), split.json, runs/<method>/package."""
    folder = tmp_path / "bench"
    package, _ = make_package(folder / "runs" / "labelled_only" / "package", values=(0, 1, 4))
    dataset = islands_dataset(tmp_path / "data", OnnxSegmenter(package, threads=1))
    ids = [case.case_id for case in dataset.labelled]
    (folder / "results.json").write_text(json.dumps({"data": str(tmp_path / "data"), "seed": 0}), encoding="utf-8")
    split = {"cases": {"train": [], "val": ids[:2], "unlabelled": [], "test": ids[2:]}, "settings": {}}
    (folder / "split.json").write_text(json.dumps(split), encoding="utf-8")
    (folder / "runs" / "no_package").mkdir()  # a method without a package (failed run) is skipped
    return folder


def test_the_rule_chooses_on_validation_and_the_table_gives_the_test_gain(script, tmp_path, capsys):
    folder = _benchmark_folder(tmp_path)
    out = tmp_path / "pp.json"
    assert script.main([str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "| bench | labelled_only | 0 |" in printed
    rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
    assert len(rows) == 1
    row = rows[0]
    assert row["chosen"] == "largest_foreground" and row["val_cases"] == 2 and row["test_cases"] == 1
    assert row["test_dice"]["largest_foreground"] == pytest.approx(1.0) and row["test_dice"]["none"] < 0.998
    assert row["gain_chosen"] == pytest.approx(1.0 - row["test_dice"]["none"])


def test_a_folder_that_is_not_a_finished_benchmark_is_refused(script, tmp_path, capsys):
    assert script.main([str(tmp_path), "--out", str(tmp_path / "pp.json")]) == 2
    assert "not a finished tskd benchmark folder" in capsys.readouterr().err
    assert not (tmp_path / "pp.json").exists()
