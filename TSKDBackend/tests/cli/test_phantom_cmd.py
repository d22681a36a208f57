from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import SimpleITK as sitk

from tskd.cli.phantom_cmd import add_phantom_command
from tskd.errors import ConfigError


def _parser():
    parser = argparse.ArgumentParser(prog="tskd data")
    sub = parser.add_subparsers(dest="data_command")
    add_phantom_command(sub)
    return parser


def test_phantom_command_writes_dataset(tmp_path, capsys):
    out = tmp_path / "ph"
    args = _parser().parse_args(
        ["phantom", "--out", str(out), "--cases", "2", "--seed", "7", "--unlabelled", "1",
         "--size", "24", "20", "10", "--spacing", "0.5", "0.5", "2", "--modality", "ct", "--oblique"]
    )
    assert args.func(args) == 0
    assert "wrote 2 labelled and 1 unlabelled" in capsys.readouterr().out
    assert len(list((out / "images").iterdir())) == 2 and len(list((out / "unlabelled").iterdir())) == 1
    image = sitk.ReadImage(str(out / "images" / "case_000.nii.gz"))
    assert image.GetSize() == (24, 20, 10)
    np.testing.assert_allclose(image.GetSpacing(), (0.5, 0.5, 2.0))
    assert not np.allclose(np.array(image.GetDirection()).reshape(3, 3), np.eye(3))
    assert sitk.GetArrayFromImage(image).dtype == np.int16
    info = json.loads((out / "phantom.json").read_text(encoding="utf-8"))
    assert info["config"]["seed"] == 7 and info["config"]["modality"] == "ct"


def test_phantom_command_2d_and_errors(tmp_path):
    parser = _parser()
    args = parser.parse_args(["phantom", "--out", str(tmp_path / "p2"), "--cases", "1", "--size", "32", "24"])
    args.func(args)
    image = sitk.ReadImage(str(tmp_path / "p2" / "images" / "case_000.nii.gz"))
    assert image.GetDimension() == 2 and image.GetSize() == (32, 24)
    bad = parser.parse_args(
        ["phantom", "--out", str(tmp_path / "p3"), "--size", "32", "24", "--spacing", "1", "1", "1"]
    )
    with pytest.raises(ConfigError, match="--spacing"):
        bad.func(bad)
    bad = parser.parse_args(["phantom", "--out", str(tmp_path / "p4"), "--structures", "7"])
    with pytest.raises(ConfigError, match="structures"):
        bad.func(bad)
    assert not (tmp_path / "p3").exists() and not (tmp_path / "p4").exists()
