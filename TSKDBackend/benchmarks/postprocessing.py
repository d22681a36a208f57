"""Keeping the largest connected component, measured on finished ``tskd benchmark`` runs.

For each run folder (``tskd benchmark --out FOLDER``) and each method's exported package in it, the
package's student segments the run's validation and test cases once (``split.json``: the same cases
the benchmark scored); every post-processing method (:data:`tskd.runtime.POSTPROCESSING_METHODS`) is
scored on both; the export stage's rule (:func:`tskd.pipeline.export_stage.choose_postprocessing`,
the default :class:`tskd.runconfig.ExportConfig`) chooses on the validation cases alone, and the
table gives the test Dice without post-processing, with each method, and with the chosen one. This
is what the export stage now does for every new run; packages exported before it carry no choice.

    python TSKDBackend/benchmarks/postprocessing.py /work/bench/hc18-80-s0 /work/bench/hip40-s0 ... \\
        [--methods labelled_only,tskd] [--out TSKDBackend/benchmarks/results/postprocessing.json]

The data path and subject pattern come from each run's ``results.json`` and ``split.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import RESULTS_DIR, machine_info, now, write_results


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def measure(folder: Path, methods: list[str] | None) -> list[dict[str, Any]]:
    """One row per method package of the run ``folder``."""
    from tskd.data.dataset import load_dataset
    from tskd.pipeline.export_stage import choose_postprocessing, score_postprocessing
    from tskd.runconfig import ExportConfig
    from tskd.runtime import OnnxSegmenter, StudentPackage

    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    split = json.loads((folder / "split.json").read_text(encoding="utf-8"))
    pattern = split.get("settings", {}).get("subject_pattern")
    dataset = load_dataset(results["data"], subject_pattern=pattern)
    settings = ExportConfig()
    rows = []
    for run in sorted((folder / "runs").iterdir()):
        if methods and run.name not in methods:
            continue
        if not (run / "package" / "tskd-model.json").is_file():
            continue
        start = time.perf_counter()
        model = OnnxSegmenter(StudentPackage.load(run / "package"), threads=2)
        val = score_postprocessing(model, dataset, split["cases"]["val"])
        choice = choose_postprocessing(val, settings)
        test = score_postprocessing(model, dataset, split["cases"]["test"])
        rows.append({
            "run": folder.name, "method": run.name, "data": results["data"], "seed": results.get("seed"),
            "labelled": len(split["cases"]["train"]), "val_cases": len(split["cases"]["val"]),
            "test_cases": test["none"]["n_cases"], "chosen": choice["method"],
            "val_dice": choice["val_dice"],
            "test_dice": {m: s["mean_dice"] for m, s in test.items()},
            "test_hd95_mm": {m: s["mean_hd95_mm"] for m, s in test.items()},
            "test_per_class": {m: {k: e["dice"] for k, e in s["per_class"].items()} for m, s in test.items()},
            "test_dice_chosen": test[choice["method"]]["mean_dice"],
            "gain_chosen": test[choice["method"]]["mean_dice"] - test["none"]["mean_dice"],
            "seconds": round(time.perf_counter() - start, 1),
        })
        print(f"  {folder.name} {run.name}: chosen {choice['method']}, test {_fmt(test['none']['mean_dice'])} -> "
              f"{_fmt(rows[-1]['test_dice_chosen'])} ({rows[-1]['seconds']} s)", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| run | method | labelled | val Dice none / largest fg / per class | chosen on val | "
            "test Dice none | test largest fg | test per class | test chosen (gain) | test HD95 mm none -> chosen |")
    lines = [head, "| " + " | ".join("---" for _ in range(10)) + " |"]
    for r in rows:
        v, t, h = r["val_dice"], r["test_dice"], r["test_hd95_mm"]
        lines.append(
            f"| {r['run']} | {r['method']} | {r['labelled']} | {_fmt(v['none'])} / {_fmt(v['largest_foreground'])} / "
            f"{_fmt(v['largest_per_class'])} | {r['chosen']} | {_fmt(t['none'])} | {_fmt(t['largest_foreground'])} | "
            f"{_fmt(t['largest_per_class'])} | {_fmt(r['test_dice_chosen'])} ({r['gain_chosen']:+.4f}) | "
            f"{h['none']:.2f} -> {h[r['chosen']]:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="tskd benchmark output folders")
    parser.add_argument("--methods", default="", help="comma-separated method folders (default: every package)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "postprocessing.json")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m] or None
    for folder in args.runs:
        if not (folder / "results.json").is_file() or not (folder / "split.json").is_file():
            print(f"{folder}: not a finished tskd benchmark folder (results.json and split.json are needed)",
                  file=sys.stderr)
            return 2
    rows = [row for folder in args.runs for row in measure(folder, methods)]
    results = {"created": now(), "command": " ".join(["python", *sys.argv]), "machine": machine_info(threads=2),
               "rule": "tskd.runconfig.ExportConfig defaults (auto, min_gain 0.002)", "rows": rows}
    print(table(rows))
    print(f"wrote {write_results(results, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
