"""Issue 31's core table across runs: every method x data set x label count, one column per seed.

Reads the results JSON files that ``tskd benchmark`` wrote (copied to ``results/litemedsam_*.json``),
groups their rows by data set and labelled count, and prints a markdown table with each seed's test
Dice (mean over foreground classes, +- sd over the test cases), the mean over seeds, the spread
between seeds (max - min) and, per seed, the method minus labels only on the same split. A
difference is called out only where it is larger than both methods' spread between seeds. Runs with
synthesis on or with a from-scratch teacher (``--base none``) are rows of their own; a second table gives
each LiteMedSAM-teacher row minus its from-scratch-teacher twin (the foundation model's share), by the same
rule. Writes the cells as JSON and a plot (one panel per data set and label count, a marker per seed).

Nothing is computed here that the runs did not measure; a cell without a run is "not run".

    python TSKDBackend/benchmarks/litemedsam_tables.py \\
        [--results 'TSKDBackend/benchmarks/results/litemedsam_*.json'] \\
        [--out TSKDBackend/benchmarks/results/litemedsam_summary.json] [--plot docs/images/litemedsam_summary.png]
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any, Iterable

from benchlib import REPO, RESULTS_DIR, now, write_results

# the method names as results.json spells them (tskd.pipeline.comparison.methods, and TEACHER_ROW in
# tskd.pipeline.comparison.teacher_reference); not imported, because importing that package loads torch
LABELS_ONLY = "labelled_only"
TEACHER_ROW = "teacher (reference)"
#: the display order of the methods (others follow in the order first seen)
ORDER = ("tskd", "tskd (boxes)", "tskd (synthesis)", "tskd_no_synth", "tskd_no_synth (boxes)", "task_agnostic_kd",
         "mae", LABELS_ONLY, TEACHER_ROW, "tskd (scratch teacher)", "teacher (reference) (scratch teacher)")
#: the methods whose students the teaching mode changes; the teacher's own row is the prompt-free teacher in either
#: mode (tskd.pipeline.comparison.teacher_reference scores the shared teacher without prompts), so a box-prompted
#: run's teacher row is a replicate of the prompt-free run's on the same split and fills the same cell
_BOX_METHODS = ("tskd", "tskd_no_synth")
#: the one method whose student synthetic images change (tskd_no_synth is the same pipeline without them; the
#: teacher trains on the labels only, so its row is the same teacher with synthesis on or off)
_SYNTH_METHODS = ("tskd",)
#: the rows that depend on the teacher's weights: a run without foundation weights (--base none) is its own row
_TEACHER_METHODS = ("tskd", "tskd_no_synth", "task_agnostic_kd", TEACHER_ROW)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _dataset_name(data: str) -> str:
    name = Path(str(data).rstrip("/")).name
    for suffix in (".csv", ".json", ".yaml"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _variant(result: dict[str, Any]) -> dict[str, Any]:
    """How the run's settings differ from the core table's: teaching mode, synthesis, a teacher without weights."""
    config = result.get("config") or {}
    # every row that depends on the teacher comes from a run that trained one and recorded its card
    scratch = (result.get("teacher") or {}).get("has_foundation_weights") is False
    return {"teaching": str((config.get("teacher") or {}).get("teaching") or "prompt_free"),
            "synthesis": bool((config.get("synthesis") or {}).get("enabled")), "scratch": scratch}


def _method_key(row: dict[str, Any], variant: dict[str, Any]) -> str:
    method = str(row.get("method"))
    tags = []
    if variant["teaching"] == "boxes" and method in _BOX_METHODS:
        tags.append("boxes")
    if variant["synthesis"] and method in _SYNTH_METHODS:
        tags.append("synthesis")
    if variant["scratch"] and method in _TEACHER_METHODS:
        tags.append("scratch teacher")
    return f"{method} ({', '.join(tags)})" if tags else method


def cells(results: Iterable[dict[str, Any]]) -> dict[tuple[str, int], dict[str, dict[int, dict[str, Any]]]]:
    """``{(data set, labelled): {method: {seed: cell}}}`` from results.json contents (done rows only)."""
    table: dict[tuple[str, int], dict[str, dict[int, dict[str, Any]]]] = {}
    for result in results:
        variant = _variant(result)
        group = (_dataset_name(result["data"]), int(result["split"]["train"]))  # the runner stores counts
        seed = int(result["seed"])
        for row in result.get("rows", []):
            if row.get("status") != "done" or not _finite(row.get("mean_dice")):
                continue
            cell = {"dice": float(row["mean_dice"]), "sd": row.get("dice_sd"), "test_cases": row.get("test_cases"),
                    "train_minutes": row.get("train_minutes"), "date": result.get("date"),
                    "source": result.get("_file"), "run_method": str(row.get("method")), "variant": variant}
            # the first file (sorted names: the prompt-free run before its "_boxes" twin) keeps a shared cell
            table.setdefault(group, {}).setdefault(_method_key(row, variant), {}).setdefault(seed, cell)
    return table


def _ordered(methods: Iterable[str]) -> list[str]:
    methods = list(methods)
    return [m for m in ORDER if m in methods] + [m for m in methods if m not in ORDER]


def summarise(table: dict[tuple[str, int], dict[str, dict[int, dict[str, Any]]]]) -> list[dict[str, Any]]:
    """One entry per data set, label count and method: per-seed Dice, mean, spread, minus labels only."""
    out = []
    for (data, labelled), methods in sorted(table.items()):
        seeds = sorted({s for per_seed in methods.values() for s in per_seed})
        reference = methods.get(LABELS_ONLY, {})
        ref_spread = _spread([c["dice"] for c in reference.values()])
        for method in _ordered(methods):
            per_seed = methods[method]
            dice = [per_seed[s]["dice"] for s in seeds if s in per_seed]
            minus = {} if method == LABELS_ONLY else {
                s: per_seed[s]["dice"] - reference[s]["dice"] for s in seeds if s in per_seed and s in reference}
            spread = _spread(dice)
            verdict = _reading(minus, spread, ref_spread, "better than labels only", "worse than labels only")
            out.append({"data": data, "labelled": labelled, "method": method,
                        "seeds": {str(s): per_seed[s] for s in seeds if s in per_seed},
                        "mean": statistics.fmean(dice) if dice else None, "spread": spread,
                        "minus_labels_only": {str(s): v for s, v in minus.items()}, "verdict": verdict})
    return out


def _reading(minus: dict[Any, float], spread: float | None, other_spread: float | None,
             better: str, worse: str) -> str | None:
    """The claim rule: a difference only where its mean is beyond both rows' seed spread, one sign in every seed."""
    if not minus:
        return None
    if len(minus) == 1:
        return "one seed: no claim"
    mean_minus = statistics.fmean(minus.values())
    if abs(mean_minus) > max(spread or 0.0, other_spread or 0.0) and all((d > 0) == (mean_minus > 0)
                                                                        for d in minus.values()):
        return better if mean_minus > 0 else worse
    return "within the spread between seeds"


def foundation_share(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each foundation-teacher row minus the same method with the from-scratch teacher, on the same split: what the
    foundation model adds (the issue's "so the foundation model's share is visible")."""
    by_key = {(e["data"], e["labelled"], e["method"]): e for e in summary}
    out = []
    for e in summary:
        cell = next(iter(e["seeds"].values()))
        if cell["variant"]["scratch"]:
            continue
        # the twin's name from the one naming rule, so that e.g. "tskd (synthesis)" finds its scratch-teacher run
        twin = _method_key({"method": cell["run_method"]}, {**cell["variant"], "scratch": True})
        scratch = by_key.get((e["data"], e["labelled"], twin))
        if scratch is None or scratch is e:  # no such run, or a row no teacher changes (labels only, MAE)
            continue
        minus = {s: c["dice"] - scratch["seeds"][s]["dice"] for s, c in e["seeds"].items() if s in scratch["seeds"]}
        out.append({"data": e["data"], "labelled": e["labelled"], "method": e["method"], "minus_scratch": minus,
                    "reading": _reading(minus, e["spread"], scratch["spread"], "LiteMedSAM teacher ahead",
                                        "LiteMedSAM teacher behind")})
    return out


def share_markdown(shares: list[dict[str, Any]]) -> str:
    """The foundation model's share, one row per data set, label count and method."""
    lines = ["| data set | labelled | method | LiteMedSAM teacher minus from-scratch teacher (per seed) | reading |",
             "| --- | --- | --- | --- | --- |"]
    for e in shares:
        lines.append(f"| {e['data']} | {e['labelled']} | {e['method']} | "
                     + ", ".join(f"{d:+.3f}" for _, d in sorted(e["minus_scratch"].items()))
                     + f" | {e['reading'] or ''} |")
    return "\n".join(lines)


def _spread(values: list[float]) -> float | None:
    return max(values) - min(values) if len(values) >= 2 else None


def _fmt(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if _finite(x) else ""


def markdown(summary: list[dict[str, Any]]) -> str:
    """The table (one row per data set, label count and method)."""
    seeds = sorted({int(s) for entry in summary for s in entry["seeds"]})
    head = ["data set", "labelled", "method"] + [f"seed {s}" for s in seeds] + [
        "mean of seeds", "spread", "minus labels only (per seed)", "reading", "training min (per seed, as each run recorded it)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for e in summary:
        cols = [e["data"], str(e["labelled"]), e["method"]]
        for s in seeds:
            c = e["seeds"].get(str(s))
            cols.append(f"{c['dice']:.3f} ± {_fmt(c['sd'])} ({c['test_cases']})" if c else "not run")
        cols += [_fmt(e["mean"]), _fmt(e["spread"]),
                 ", ".join(f"{d:+.3f}" for _, d in sorted(e["minus_labels_only"].items())),
                 e["verdict"] or "",
                 ", ".join(_fmt(c.get("train_minutes"), 1) or "?" for _, c in sorted(e["seeds"].items()))]
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def plot(summary: list[dict[str, Any]], path: Path) -> Path:
    """One panel per data set and label count: each method's Dice per seed (+- sd over test cases)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = sorted({(e["data"], e["labelled"]) for e in summary})
    figure = Figure(figsize=(5.5 * max(1, len(groups)), 4.8), dpi=110)
    FigureCanvasAgg(figure)
    markers = "os^Dv"
    for index, group in enumerate(groups):
        axes = figure.add_subplot(1, len(groups), index + 1)
        entries = [e for e in summary if (e["data"], e["labelled"]) == group]
        seeds = sorted({s for e in entries for s in e["seeds"]}, key=int)
        labelled_seeds: set[str] = set()
        for x, e in enumerate(entries):
            for seed, c in sorted(e["seeds"].items()):
                k = seeds.index(seed)
                sd = c["sd"] if _finite(c["sd"]) else 0.0
                axes.errorbar(x + 0.15 * (k - (len(seeds) - 1) / 2), c["dice"], yerr=sd,  # same look per seed
                              fmt=markers[int(seed) % len(markers)], capsize=3, color=f"C{int(seed) % 10}",
                              label=None if seed in labelled_seeds else f"seed {seed}")
                labelled_seeds.add(seed)
            if e["method"] == LABELS_ONLY and e["mean"] is not None:
                axes.axhline(e["mean"], color="grey", lw=0.8, ls="--")
        axes.set_xticks(range(len(entries)))
        axes.set_xticklabels([e["method"] for e in entries], rotation=35, ha="right", fontsize=8)
        axes.set_title(f"{group[0]}, {group[1]} labelled", fontsize=10)
        axes.set_ylabel("test Dice (± sd over test cases)")
        axes.set_ylim(max(0.0, min(c["dice"] - (c["sd"] or 0) for e in entries for c in e["seeds"].values()) - 0.05),
                      1.0)
        axes.legend(fontsize=8, loc="lower left")
    figure.suptitle("LiteMedSAM teacher: test Dice per method and seed (dashed: labels only, mean of seeds)",
                    fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def load(pattern: str) -> list[dict[str, Any]]:
    results = []
    for name in sorted(glob.glob(pattern)):
        if name.endswith("_summary.json"):
            continue
        data = json.loads(Path(name).read_text(encoding="utf-8"))
        if "rows" in data and "split" in data and "seed" in data:
            data["_file"] = Path(name).name
            results.append(data)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(RESULTS_DIR / "litemedsam_*.json"), help="glob of results JSON files")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "litemedsam_summary.json")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "images" / "litemedsam_summary.png")
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # the table (with ±) is pasted into UTF-8 docs, whatever the locale
        sys.stdout.reconfigure(encoding="utf-8")
    results = load(args.results)
    if not results:
        print(f"error: no tskd benchmark results match {args.results}", file=sys.stderr)
        return 2
    summary = summarise(cells(results))
    shares = foundation_share(summary)
    print(markdown(summary))
    if shares:
        print()
        print(share_markdown(shares))
    write_results({"benchmark": "litemedsam_tables", "created": now(), "sources": [r["_file"] for r in results],
                   "rows": summary, "foundation_share": shares}, args.out)
    print(f"wrote {args.out}")
    print(f"wrote {plot(summary, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
