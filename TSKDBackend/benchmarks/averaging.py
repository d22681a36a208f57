"""Averaging finished students: ensembles of exported packages and mirrored test-time augmentation.

Each group is a set of ``tskd benchmark`` run folders trained on the same split (``split.json``
checked) whose exported packages are combined without training anything: the class probabilities
of every member are averaged (the rule of :class:`tskd.student.ensemble.StudentEnsemble`; members
with fewer neighbouring slices get the middle channels of the widest member's input), and
``--mirror`` also scores each single package with its input flipped along the image axes and the
slice axis (the prediction flipped back, probabilities averaged). Every variant segments the run's
validation and test cases and is scored with and without the export's post-processing (the choice
on validation is the export stage's rule, :func:`tskd.pipeline.export_stage.choose_postprocessing`).

    python TSKDBackend/benchmarks/averaging.py \\
        --group 'c2=/work/bench/hip40-s{seed}-ctx2,c2b=/work/bench/hip40-s{seed}-ctx2-m1' --seeds 0 1 \\
        --combos c2+c2b [--mirror] [--out TSKDBackend/benchmarks/results/averaging.json]

``{seed}`` in a folder is replaced by each ``--seeds`` value; a folder's package is
``runs/labelled_only/package`` (``--package`` for another method's).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchlib import RESULTS_DIR, machine_info, now, write_results
from tskd.suggest.scoring import softmax

MIRRORS = {"width": [(), (3,)], "height": [(), (2,)], "slices": [(), (1,)],
           "all": [(), (1,), (2,), (3,), (1, 2), (1, 3), (2, 3), (1, 2, 3)]}
"""Test-time mirrorings: the axes of the model's (B, C, S, S) input flipped in each pass; C is the slice axis."""


class Averaged:
    """A SliceModel that averages the class probabilities of ``models`` over ``flips`` of the input."""

    def __init__(self, models: Sequence[Any], flips: Sequence[tuple[int, ...]] = ((),)) -> None:
        self.models, self.flips = list(models), list(flips)
        self.context_slices = max(int(getattr(m, "context_slices", 0) or 0) for m in self.models)
        first = self.models[0]
        for name in ("input_size", "num_classes", "label_values", "normalization", "slice_axis", "postprocessing"):
            setattr(self, name, getattr(first, name, None))

    def logits(self, batch: np.ndarray) -> np.ndarray:
        total = 0.0
        for model in self.models:
            own = int(getattr(model, "context_slices", 0) or 0)
            x = batch[:, self.context_slices - own:self.context_slices + own + 1]
            for axes in self.flips:
                flipped = np.ascontiguousarray(np.flip(x, axes) if axes else x)
                p = softmax(model.logits(flipped))
                spatial = tuple(a for a in axes if a != 1)  # a slice-axis flip changes the input only
                total = total + (np.flip(p, spatial) if spatial else p)
        return np.log(total / (len(self.models) * len(self.flips)) + 1e-8).astype(np.float32)


def _score(model: Any, dataset: Any, split: dict[str, Any]) -> dict[str, Any]:
    from tskd.pipeline.export_stage import choose_postprocessing, score_postprocessing
    from tskd.runconfig import ExportConfig

    val = score_postprocessing(model, dataset, split["cases"]["val"])
    test = score_postprocessing(model, dataset, split["cases"]["test"])
    chosen = choose_postprocessing(val, ExportConfig())["method"]
    return {"val_dice": {m: s["mean_dice"] for m, s in val.items()},
            "test_dice": {m: s["mean_dice"] for m, s in test.items()},
            "chosen": chosen, "test_dice_chosen": test[chosen]["mean_dice"],
            "val_cases": val["none"]["n_cases"], "test_cases": test["none"]["n_cases"]}


def measure(group: dict[str, str], seed: int, combos: list[list[str]], mirror: bool, package: str) -> list[dict]:
    from tskd.data.dataset import load_dataset
    from tskd.runtime import OnnxSegmenter, StudentPackage

    folders = {name: Path(path.format(seed=seed)) for name, path in group.items()}
    splits = {name: json.loads((folder / "split.json").read_text(encoding="utf-8")) for name, folder in folders.items()}
    first = next(iter(splits.values()))
    for name, split in splits.items():
        if split["cases"] != first["cases"]:
            raise SystemExit(f"{folders[name]}: another split than {next(iter(folders.values()))}; a group must share one")
    results = json.loads((next(iter(folders.values())) / "results.json").read_text(encoding="utf-8"))
    dataset = load_dataset(results["data"], subject_pattern=first.get("settings", {}).get("subject_pattern"))
    models = {name: OnnxSegmenter(StudentPackage.load(folder / package), threads=2) for name, folder in folders.items()}
    variants: list[tuple[str, Averaged]] = [(name, Averaged([models[name]])) for name in models]
    variants += [("+".join(combo), Averaged([models[n] for n in combo])) for combo in combos]
    if mirror:
        for name in models:
            for kind, flips in MIRRORS.items():
                if "slices" in kind or kind == "all":
                    if not getattr(models[name], "context_slices", 0):
                        continue
                variants.append((f"{name} mirrored ({kind})", Averaged([models[name]], flips)))
    rows = []
    for name, model in variants:
        start = time.perf_counter()
        row = {"seed": seed, "variant": name, "data": results["data"], **_score(model, dataset, first)}
        row["seconds"] = round(time.perf_counter() - start, 1)
        print(f"  seed {seed} {name}: test {row['test_dice']['none']:.4f} raw, {row['test_dice_chosen']:.4f} "
              f"({row['chosen']}); val {row['val_dice']['none']:.4f}", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| seed | variant | val Dice | test Dice raw | post-processing chosen on val | test Dice with it |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['seed']} | {r['variant']} | {r['val_dice']['none']:.4f} | {r['test_dice']['none']:.4f} | "
              f"{r['chosen']} | {r['test_dice_chosen']:.4f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", required=True, help="name=folder,... (folders may contain {seed})")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--combos", default="", help="comma-separated name+name+... ensembles to score")
    parser.add_argument("--mirror", action="store_true", help="also score each package with mirrored inputs")
    parser.add_argument("--package", default="runs/labelled_only/package", help="the package inside each folder")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "averaging.json")
    args = parser.parse_args(argv)
    group = dict(item.split("=", 1) for item in args.group.split(","))
    combos = [combo.split("+") for combo in args.combos.split(",") if combo]
    for combo in combos:
        unknown = [name for name in combo if name not in group]
        if unknown:
            print(f"--combos: {', '.join(unknown)} not in --group ({', '.join(group)})", file=sys.stderr)
            return 2
    rows = [row for seed in args.seeds for row in measure(group, seed, combos, args.mirror, args.package)]
    results = {"created": now(), "command": " ".join(["python", *sys.argv]), "machine": machine_info(threads=2),
               "group": group, "rows": rows}
    print(table(rows))
    print(f"wrote {write_results(results, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
