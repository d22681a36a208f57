"""benchmarks/averaging.py: ensembles of finished packages and mirrored inputs, scored with the export rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.runtime.packages import islands_dataset, make_package
from tskd.runtime import OnnxSegmenter, StudentPackage


@pytest.fixture()
def script(load_benchmark_script):
    return load_benchmark_script("averaging")


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two finished benchmark folders on one split, packages of two seeds."""
    folders = []
    for seed in (0, 1):
        folder = tmp_path / f"bench{seed}"
        package, _ = make_package(folder / "runs" / "labelled_only" / "package", values=(0, 1, 4), seed=seed)
        if seed == 0:
            dataset = islands_dataset(tmp_path / "data", OnnxSegmenter(package, threads=1))
            ids = [case.case_id for case in dataset.labelled]
        (folder / "results.json").write_text(json.dumps({"data": str(tmp_path / "data"), "seed": 0}), encoding="utf-8")
        split = {"cases": {"train": [], "val": ids[:2], "unlabelled": [], "test": ids[2:]}, "settings": {}}
        (folder / "split.json").write_text(json.dumps(split), encoding="utf-8")
        folders.append(folder)
    return folders[0], folders[1]


def _softmax(z):
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def test_members_and_mirrored_passes_are_averaged_as_probabilities(script, tmp_path):
    a, b = (OnnxSegmenter(StudentPackage.load(f / "runs" / "labelled_only" / "package"), threads=1)
            for f in _folders(tmp_path))
    x = np.random.default_rng(0).normal(size=(2, 1, 32, 32)).astype(np.float32)
    ensemble = np.exp(script.Averaged([a, b]).logits(x))
    np.testing.assert_allclose(ensemble, (_softmax(a.logits(x)) + _softmax(b.logits(x))) / 2, atol=1e-5)
    mirrored = np.exp(script.Averaged([a], script.MIRRORS["width"]).logits(x))
    flipped = _softmax(a.logits(np.ascontiguousarray(x[..., ::-1])))[..., ::-1]
    np.testing.assert_allclose(mirrored, (_softmax(a.logits(x)) + flipped) / 2, atol=1e-5)
    assert script.Averaged([a]).logits(x).argmax(1).tolist() == a.logits(x).argmax(1).tolist()


def test_the_table_and_json_name_every_variant(script, tmp_path, capsys):
    a, b = _folders(tmp_path)
    out = tmp_path / "avg.json"
    group = f"a={tmp_path}/bench{{seed}},b={b}"
    assert script.main(["--group", group, "--seeds", "0", "--combos", "a+b", "--mirror", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
    assert [r["variant"] for r in rows] == ["a", "b", "a+b", "a mirrored (width)", "a mirrored (height)",
                                            "b mirrored (width)", "b mirrored (height)"]  # no slice axis: 1 channel
    assert rows[0]["test_dice"]["none"] < 1.0 and rows[0]["chosen"] == "largest_foreground"
    assert all(r["val_cases"] == 2 and r["test_cases"] == 1 for r in rows)


def test_a_group_must_share_one_split_and_combos_name_its_members(script, tmp_path, capsys):
    a, b = _folders(tmp_path)
    assert script.main(["--group", f"a={a}", "--combos", "a+c", "--out", str(tmp_path / "x.json")]) == 2
    assert "c not in --group" in capsys.readouterr().err
    split = json.loads((b / "split.json").read_text(encoding="utf-8"))
    split["cases"]["test"] = []
    (b / "split.json").write_text(json.dumps(split), encoding="utf-8")
    with pytest.raises(SystemExit, match="another split"):
        script.main(["--group", f"a={a},b={b}", "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()
