"""Issue 31's cross-run table: seeds side by side, the mean and spread of the seeds, each method minus labels
only on the same split, and a claim only where the difference is larger than the spread between seeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SRC = BENCHMARKS.parent / "src"


def _result(data: str, seed: int, rows: dict[str, float], *, teaching: str = "prompt_free", train: int = 10,
            synthesis: bool = False, foundation: bool = True) -> dict:
    return {"data": data, "seed": seed, "date": "2026-12-07", "split": {"train": train, "test": 8},
            "config": {"teacher": {"teaching": teaching}, "synthesis": {"enabled": synthesis}},
            "teacher": {"architecture": "litemedsam" if foundation else "small", "has_foundation_weights": foundation},
            "rows": [{"method": m, "status": "done", "mean_dice": d, "dice_sd": 0.05, "test_cases": 8,
                      "train_minutes": 2.0} for m, d in rows.items()]
            + [{"method": "mae", "status": "failed", "mean_dice": None, "error": "boom"}]}


def _write(folder: Path) -> None:
    runs = {
        "litemedsam_x_10_seed0.json": _result("/d/x", 0, {"tskd": 0.90, "labelled_only": 0.80, "task_agnostic_kd": 0.79,
                                                                "teacher (reference)": 0.7}),
        # the same teacher scored again by a box-prompted run of seed 0: the prompt-free run's cell is kept
        "litemedsam_x_10_seed0_boxes.json": _result("/d/x", 0, {"teacher (reference)": 0.5}, teaching="boxes"),
        "litemedsam_x_10_seed1.json": _result("/d/x", 1, {"tskd": 0.92, "labelled_only": 0.82}),
        "litemedsam_x_10_seed1_boxes.json": _result("/d/x", 1, {"tskd": 0.815, "teacher (reference)": 0.6},
                                                     teaching="boxes"),
        # synthesis on: its TS-KD student is a row of its own, its teacher the same teacher (first file kept)
        "litemedsam_x_10_seed0_synth.json": _result("/d/x", 0, {"tskd": 0.88, "tskd_no_synth": 0.87,
                                                                "teacher (reference)": 0.4}, synthesis=True),
        # a teacher trained from scratch (--base none): its student and its teacher are rows of their own
        "litemedsam_x_10_seed0_scratch.json": _result("/d/x", 0, {"tskd": 0.86, "labelled_only": 0.3,
                                                                  "teacher (reference)": 0.65}, foundation=False),
        "litemedsam_x_10_seed1_scratch.json": _result("/d/x", 1, {"tskd": 0.88}, foundation=False),
        "litemedsam_x_10_seed0_synth_scratch.json": _result("/d/x", 0, {"tskd": 0.85}, synthesis=True, foundation=False),
        "litemedsam_y_20_seed0.json": _result("/d/y.csv", 0, {"tskd": 0.70, "labelled_only": 0.71}, train=20),
        "litemedsam_y_20_seed1.json": _result("/d/y.csv", 1, {"tskd": 0.74, "labelled_only": 0.72}, train=20),
    }
    for name, content in runs.items():
        (folder / name).write_text(json.dumps(content), encoding="utf-8")


def test_the_table_puts_seeds_side_by_side_and_claims_only_beyond_the_spread(tmp_path: Path) -> None:
    _write(tmp_path)
    out, png = tmp_path / "summary.json", tmp_path / "summary.png"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "litemedsam_tables.py"), "--results",
                           str(tmp_path / "litemedsam_*.json"), "--out", str(out), "--plot", str(png)],
                          capture_output=True, text=True, encoding="utf-8", timeout=120,
                          # CI runs with an ASCII locale: the table is UTF-8 whatever the locale says
                          env={**os.environ, "PYTHONPATH": str(SRC), "LC_ALL": "C", "PYTHONUTF8": "0"})
    assert done.returncode == 0, done.stderr
    written = json.loads(out.read_text(encoding="utf-8"))
    rows = {(r["data"], r["labelled"], r["method"]): r for r in written["rows"]}
    assert set(rows) == {("x", 10, "tskd"), ("x", 10, "labelled_only"), ("x", 10, "task_agnostic_kd"),
                         ("x", 10, "tskd (boxes)"), ("x", 10, "teacher (reference)"),
                         ("x", 10, "tskd (synthesis)"), ("x", 10, "tskd_no_synth"),
                         ("x", 10, "tskd (scratch teacher)"), ("x", 10, "teacher (reference) (scratch teacher)"),
                         ("x", 10, "tskd (synthesis, scratch teacher)"),
                         ("y", 20, "tskd"), ("y", 20, "labelled_only")}  # the failed MAE row is left out
    tskd = rows[("x", 10, "tskd")]
    assert abs(tskd["mean"] - 0.91) < 1e-9 and abs(tskd["spread"] - 0.02) < 1e-9
    assert {k: round(v, 6) for k, v in tskd["minus_labels_only"].items()} == {"0": 0.1, "1": 0.1}
    assert tskd["verdict"] == "better than labels only"  # +0.10 in both seeds, spreads 0.02
    # y: -0.01 and +0.02, spreads 0.04 and 0.01: no claim
    assert rows[("y", 20, "tskd")]["verdict"] == "within the spread between seeds"
    assert rows[("x", 10, "task_agnostic_kd")]["verdict"] == "one seed: no claim"
    # a box-prompted run's teacher row is the prompt-free teacher: it fills that row's seed-1 cell
    teacher = rows[("x", 10, "teacher (reference)")]["seeds"]
    assert {seed: cell["dice"] for seed, cell in teacher.items()} == {"0": 0.7, "1": 0.6}
    boxes = rows[("x", 10, "tskd (boxes)")]
    assert list(boxes["seeds"]) == ["1"] and round(boxes["minus_labels_only"]["1"], 6) == -0.005
    assert rows[("x", 10, "tskd (synthesis)")]["seeds"]["0"]["dice"] == 0.88
    assert rows[("x", 10, "tskd_no_synth")]["seeds"]["0"]["dice"] == 0.87  # synthesis does not touch it
    assert round(rows[("x", 10, "tskd (scratch teacher)")]["minus_labels_only"]["0"], 6) == 0.06
    assert rows[("x", 10, "teacher (reference) (scratch teacher)")]["seeds"]["0"]["dice"] == 0.65
    # labels only does not depend on the teacher: the scratch run's replicate does not replace the first file's
    assert rows[("x", 10, "labelled_only")]["seeds"]["0"]["dice"] == 0.80
    # the foundation model's share: each foundation row minus its scratch-teacher twin, same claim rule
    shares = {(s["data"], s["labelled"], s["method"]): s for s in written["foundation_share"]}
    assert set(shares) == {("x", 10, "tskd"), ("x", 10, "teacher (reference)"), ("x", 10, "tskd (synthesis)")}
    # synthesis on with both teachers: the twin carries both tags
    assert round(shares[("x", 10, "tskd (synthesis)")]["minus_scratch"]["0"], 6) == 0.03
    assert {k: round(v, 6) for k, v in shares[("x", 10, "tskd")]["minus_scratch"].items()} == {"0": 0.04, "1": 0.04}
    assert shares[("x", 10, "tskd")]["reading"] == "LiteMedSAM teacher ahead"  # +0.04 both seeds, spreads 0.02
    assert shares[("x", 10, "teacher (reference)")]["reading"] == "one seed: no claim"
    table = done.stdout
    assert "| x | 10 | tskd | +0.040, +0.040 | LiteMedSAM teacher ahead |" in table
    # the display order: the core rows first, the scratch teacher's at the end of their group
    main_table = table.split("\n\n")[0]  # the foundation-share table follows after a blank line
    x_rows = [line.split(" | ")[2] for line in main_table.splitlines() if line.startswith("| x | 10 |")]
    assert x_rows == ["tskd", "tskd (boxes)", "tskd (synthesis)", "tskd_no_synth", "task_agnostic_kd",
                      "labelled_only", "teacher (reference)", "tskd (scratch teacher)",
                      "teacher (reference) (scratch teacher)", "tskd (synthesis, scratch teacher)"]
    assert "| x | 10 | task_agnostic_kd | 0.790 ± 0.050 (8) | not run | 0.790 |" in table
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_no_results_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / "litemedsam_tables.py"), "--results",
                           str(tmp_path / "litemedsam_*.json"), "--out", str(tmp_path / "s.json")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert done.returncode == 2 and "no tskd benchmark results match" in done.stderr
    assert not (tmp_path / "s.json").exists()
