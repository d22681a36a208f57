"""``tskd data check`` on the command line."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from tskd.cli.main import main


def _dataset(root, n=2):
    for i in range(n):
        for folder, array in (("images", np.full((4, 5, 6), i + 1, np.int16)), ("labels", np.zeros((4, 5, 6), np.uint8))):
            array = array.copy()
            array[1, 1, 1] = 1 if folder == "labels" else 100
            (root / folder).mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(sitk.GetImageFromArray(array), str(root / folder / f"c{i}.nii.gz"))
    return root


def test_check_usable_dataset(tmp_path, capsys):
    _dataset(tmp_path / "d")
    assert main(["data", "check", str(tmp_path / "d"), "--json", str(tmp_path / "out" / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "Cases:     2 usable (2 labelled, 0 unlabelled)" in out and "Result:    USABLE" in out
    report = json.loads((tmp_path / "out" / "r.json").read_text(encoding="utf-8"))
    assert report["usable"] is True and report["label_values"] == [0, 1] and report["n_labelled"] == 2


def test_check_unusable_dataset_exits_1(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["data", "check", str(tmp_path / "empty")]) == 1
    out = capsys.readouterr().out
    assert "NOT USABLE" in out and "no images/ (or imagesTr/) folder found" in out


def test_check_subject_pattern_and_help(tmp_path, capsys):
    _dataset(tmp_path / "d")
    assert main(["data", "check", str(tmp_path / "d"), "--subject-pattern", "^(c)"]) == 0
    assert "Subjects:  1 among the labelled cases" in capsys.readouterr().out
    assert main(["data"]) == 1
    assert "check" in capsys.readouterr().out
