"""The run report: ``RUN/report/report.md`` with PNG figures, so a person can see what was learnt.

Everything is read from the run folder's files (metric logs, stage summaries, the package); the
only computation is segmenting a few validation volumes with the exported student for overlays.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tskd.pipeline.data_stage import PreparedData  # noqa: E402
from tskd.pipeline.run_folder import RunFolder, read_json  # noqa: E402
from tskd.pipeline.update import lineage_line  # noqa: E402
from tskd.preprocess import apply_normalization, slices_along  # noqa: E402
from tskd.runtime import OnnxSegmenter, StudentPackage, segment_volume  # noqa: E402

__all__ = ["write_report", "STAGE_FOLDERS"]

logger = logging.getLogger(__name__)

#: Stage name -> folder of the run holding its ``metrics.jsonl`` and ``stage.json``.
STAGE_FOLDERS = {
    "teacher": "teacher",
    "synthesis": "synthesis",
    "mae": "student/mae",
    "distill": "student/distill",
    "finetune": "student/finetune",
    "reference": "student/reference",
}


def _history(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _loss_curves(run: RunFolder, out: Path) -> Path | None:
    stages = [(name, _history(run.root / folder / "metrics.jsonl")) for name, folder in STAGE_FOLDERS.items()]
    stages = [(name, h) for name, h in stages if any(r["kind"] == "train" for r in h)]
    if not stages:
        return None
    fig, axes = plt.subplots(1, len(stages), figsize=(4 * len(stages), 3.2), squeeze=False)
    for ax, (name, history) in zip(axes[0], stages):
        train = [r for r in history if r["kind"] == "train"]
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue", label="training loss")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_yscale("log" if min(r["loss"] for r in train) > 0 else "linear")
        validation = [r for r in history if r["kind"] == "validation" and "val_dice" in r]
        if validation:
            twin = ax.twinx()
            twin.plot([r["step"] for r in validation], [r["val_dice"] for r in validation], "o-", color="tab:green",
                      label="validation Dice")
            twin.set_ylim(0, 1)
            twin.set_ylabel("validation Dice", color="tab:green")
        ax.set_ylabel("loss", color="tab:blue")
    fig.tight_layout()
    path = out / "loss_curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _stage_dice(run: RunFolder) -> dict[str, float]:
    values = {}
    for name, folder in STAGE_FOLDERS.items():
        stage = run.root / folder / "stage.json"
        if stage.is_file():
            dice = read_json(stage).get("metrics", {}).get("val_dice")
            if isinstance(dice, (int, float)):
                values[name] = float(dice)
    return values


def _dice_bars(values: dict[str, float], volume_dice: float | None, out: Path) -> Path | None:
    if volume_dice is not None:
        values = {**values, "exported\n(volumes)": volume_dice}
    if not values:
        return None
    fig, ax = plt.subplots(figsize=(1.4 * len(values) + 2, 3.2))
    bars = ax.bar(list(values), list(values.values()), color="tab:green")
    ax.bar_label(bars, fmt="%.3f")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean foreground Dice")
    ax.set_title("validation Dice per stage")
    fig.tight_layout()
    path = out / "validation_dice.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _overlays(run: RunFolder, data: PreparedData, out: Path, max_cases: int) -> list[Path]:
    if data.dataset is None or not (run.package / "tskd-model.json").is_file():
        return []
    package = StudentPackage.load(run.package)
    model = OnnxSegmenter(package)
    colors = {label.value: label.color for label in package.labels}
    paths = []
    for case_id in data.split["val"][:max_cases]:
        image, label = data.dataset.read_case(data.dataset.case(case_id))
        if label is None:
            continue
        prediction = segment_volume(model, image.array)
        axis = package.slice_axis if image.array.ndim == 3 else 0
        if image.array.ndim == 3:
            counts = (slices_along(label.array, axis) > 0).reshape(label.array.shape[axis], -1).sum(axis=1)
            index = int(np.argmax(counts))
            pixels = slices_along(image.array, axis)[index]
            ref, pred = slices_along(label.array, axis)[index], slices_along(prediction, axis)[index]
        else:
            pixels, ref, pred = image.array, label.array, prediction
        shown = apply_normalization(pixels.astype(np.float32), package.normalization)
        fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
        for ax, (title, mask) in zip(axes, (("reference", ref), ("exported student", pred))):
            ax.imshow(shown, cmap="gray", interpolation="nearest")
            for value, color in colors.items():
                if value and (mask == value).any():
                    ax.contour(mask == value, levels=[0.5], colors=[color], linewidths=1.2)
            ax.set_title(f"{case_id}: {title}")
            ax.axis("off")
        fig.tight_layout()
        path = out / f"overlay_{case_id}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def _comparison_table(summary: dict[str, Any]) -> list[str]:
    """The two students' validation Dice (exported packages, validation volumes) and which was kept."""
    if summary.get("reference") is None:
        return []
    rows = ["| student | validation Dice (volumes) | exported |", "| --- | --- | --- |"]
    for kind, title in (("distilled", "TS-KD (distilled, fine-tuned)"), ("reference", "labels only (reference)")):
        rows.append(f"| {title} | {_fmt((summary.get(kind) or {}).get('val_dice'))} | "
                    f"{'yes' if summary.get('chosen') == kind else ''} |")
    return rows + [""]


def _fmt(value: Any, digits: int = 3) -> str:
    if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def write_report(run: RunFolder, data: PreparedData, summary: dict[str, Any], *, max_overlays: int = 3) -> Path:
    """Write ``report/report.md`` and its figures; returns the Markdown file's path."""
    out = run.report
    out.mkdir(parents=True, exist_ok=True)
    stages = summary.get("stages", {})
    lines = ["# TS-KD run report", "", f"Run folder: `{run.root}`  ", f"Dataset: `{summary.get('data')}`", ""]
    if summary.get("lineage"):
        lines += [f"Updated from {lineage_line(summary['lineage'])}: the teacher and the students started from "
                  "that run's and trained briefly on the enlarged labelled set.", ""]
    if summary.get("verdict"):
        lines += [f"**Exported model: {summary['verdict']}.**", ""]
        if summary.get("warning"):
            lines += [f"Warning: {summary['warning']}.", ""]
        lines += _comparison_table(summary)
    teacher = stages.get("teacher")
    if teacher:
        if teacher["has_foundation_weights"]:
            how = {"lora": "with LoRA on its encoder", "frozen": "with its encoder frozen (decoder only)"}.get(
                teacher.get("encoder"), "")
            labels = " It labelled the transfer set through box prompts." if teacher.get("teaching") == "boxes" else ""
            lines += [f"Teacher: **{teacher['architecture']}** fine-tuned {how} from the foundation weights "
                      f"`{teacher.get('base')}` (SHA-256 `{teacher.get('base_sha256')}`).{labels}", ""]
        else:
            lines += [f"Teacher: **{teacher['architecture']}**, **trained from scratch: no foundation weights** "
                      "were used (`--base none`). `tskd foundation get litemedsam` gets a foundation model that runs on "
                      "a CPU (offline: `tskd foundation import FILE`); train again with `--base litemedsam`.", ""]
    cases = summary.get("data_summary", {}).get("cases", {})
    lines += ["## Data", "", "| split | cases |", "| --- | --- |"]
    lines += [f"| {name} | {count} |" for name, count in cases.items()]
    synthesis = stages.get("synthesis")
    if synthesis:
        counts = synthesis["transfer_set"]["counts"]
        dropped = synthesis["transfer_set"].get("dropped", {})
        lines += ["", "## Transfer set", "", "| source | items |", "| --- | --- |"]
        lines += [f"| {name} | {count} |" for name, count in counts.items()]
        if dropped:
            lines += ["", "Synthetic images dropped by the quality gate: "
                      + ", ".join(f"{reason or 'other'}: {n}" for reason, n in dropped.items()) + "."]
        grid = run.transfer_set / "grid.png"
        if grid.is_file():
            lines += ["", f"![real vs synthetic]({Path('..') / 'transfer_set' / 'grid.png'})"]
    lines += ["", "## Training", ""]
    curves = _loss_curves(run, out)
    if curves:
        lines += [f"![loss curves]({curves.name})", ""]
    package = stages.get("package", {})
    validation = package.get("validation") or {}
    bars = _dice_bars(_stage_dice(run), validation.get("mean_dice"), out)
    if bars:
        lines += [f"![validation Dice]({bars.name})", ""]
    if validation:
        lines += ["## Exported student on the validation volumes (full resolution, own geometry)", "",
                  "| class | Dice | HD95 (mm) | ASSD (mm) |", "| --- | --- | --- | --- |"]
        for entry in validation["per_class"].values():
            lines.append(f"| {entry['name']} | {_fmt(entry['dice'])} | {_fmt(entry['hd95_mm'], 2)} | "
                         f"{_fmt(entry['assd_mm'], 2)} |")
        lines.append(f"| **mean** | **{_fmt(validation['mean_dice'])}** | {_fmt(validation['mean_hd95_mm'], 2)} | "
                     f"{_fmt(validation['mean_assd_mm'], 2)} |")
        lines.append("")
        post = validation.get("postprocessing") or {}
        if post.get("val_dice"):
            tried = ", ".join(f"{method} {_fmt(dice)}" for method, dice in post["val_dice"].items())
            lines += [f"Post-processing: **{post['method']}** ({post.get('decided_on', '')}; mean Dice of each "
                      f"method tried: {tried}). The figures above are with it.", ""]
    overlays = _overlays(run, data, out, max_overlays)
    if overlays:
        lines += ["## Validation cases", "", "Reference (left) and the exported student's segmentation (right) on "
                  "the slice with the most foreground.", ""]
        lines += [f"![{p.stem}]({p.name})" for p in overlays]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    logger.info("report: %s", path)
    return path
