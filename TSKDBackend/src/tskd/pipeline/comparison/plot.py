"""The benchmark's bar plot: test Dice per method (PNG, matplotlib's Agg canvas, no pyplot state).

One bar per method for the mean Dice over classes with the standard deviation over test cases as
an error bar; with several foreground classes, a thinner bar per class beside it. Failed methods
keep their place on the axis, marked "failed".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tskd.pipeline.comparison.report import class_names

__all__ = ["plot_results"]


def _value(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else 0.0


def plot_results(results: Sequence[dict[str, Any]], path: Path, *, title: str = "") -> Path:
    """Draw the plot to ``path`` (PNG).

    Args:
        results: one entry per method, with ``method``, ``status`` and ``test`` (as in results.json).
        path: the PNG to write.
        title: the plot's title.
    """
    names = class_names(results)
    shown = names if len(names) > 1 else []
    groups = 1 + len(shown)
    width = 0.8 / groups
    figure = Figure(figsize=(max(6.0, 1.6 * len(results) * (1 + 0.3 * len(shown))), 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for i, result in enumerate(results):
        test = result.get("test") or {}
        if result["status"] != "done" or not test:
            axes.text(i, 0.02, "failed", ha="center", va="bottom", rotation=90, color="firebrick")
            continue
        left = i - 0.4 + width / 2
        axes.bar(left, _value(test.get("mean_dice")), width, yerr=_value(test.get("dice_sd")), capsize=3,
                 color="tab:blue", label="mean Dice (± sd over cases)" if i == 0 else None)
        axes.text(left, _value(test.get("mean_dice")) + 0.01, f"{_value(test.get('mean_dice')):.3f}", ha="center",
                  va="bottom", fontsize=7)
        for j, (label, name) in enumerate(shown, start=1):
            entry = test["per_class"].get(label, {})
            axes.bar(left + j * width, _value(entry.get("dice")), width, yerr=_value(entry.get("dice_sd")),
                     capsize=2, color=f"C{j + 1}", alpha=0.8, label=name if i == 0 else None)
    axes.set_xticks(range(len(results)))
    axes.set_xticklabels([r["method"] for r in results], rotation=15)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("test Dice")
    if title:
        axes.set_title(title, fontsize=9)
    if any(r["status"] == "done" for r in results):
        axes.legend(loc="lower right", fontsize=7)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
