"""The benchmark's results as a markdown table, a CSV file and a JSON file.

One row per method: student, parameter count, onnxruntime time per slice, test Dice (mean over
classes, with the standard deviation over test cases), Dice per class when there is more than one,
HD95 and ASSD in mm, the volume-level validation Dice, training time and a note. A failed method
keeps its row with the error.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

from tskd.atomic import write_json, write_text

__all__ = ["class_names", "csv_rows", "markdown_table", "write_table_files", "finite_json", "CSV_COLUMNS"]

#: Columns of the CSV file before and after the per-class Dice columns (``dice_<class name>``).
CSV_COLUMNS = (
    ("method", "status", "student", "parameters", "ms_per_slice", "test_cases", "mean_dice", "dice_sd"),
    ("hd95_mm", "assd_mm", "val_dice", "train_minutes", "note", "error"),
)


def class_names(results: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(label value, class name)`` of the foreground classes, from the first evaluated method."""
    for result in results:
        test = result.get("test")
        if test:
            return [(label, entry["name"]) for label, entry in sorted(test["per_class"].items(), key=lambda x: int(x[0]))]
    return []


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def csv_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat rows (one per method) with the columns of :data:`CSV_COLUMNS`."""
    names = class_names(results)
    rows = []
    for r in results:
        test = r.get("test") or {}
        per_class = test.get("per_class", {})
        row: dict[str, Any] = {
            "method": r["method"], "status": r["status"], "student": r.get("student"),
            "parameters": r.get("parameters"), "ms_per_slice": _number(r.get("ms_per_slice")),
            "test_cases": test.get("n_cases"), "mean_dice": _number(test.get("mean_dice")),
            "dice_sd": _number(test.get("dice_sd")),
        }
        for label, name in names:
            row[f"dice_{name}"] = _number(per_class.get(label, {}).get("dice"))
        row.update({
            "hd95_mm": _number(test.get("mean_hd95_mm")), "assd_mm": _number(test.get("mean_assd_mm")),
            "val_dice": _number(r.get("val_dice")),
            "train_minutes": round(r["train_seconds"] / 60.0, 1) if _number(r.get("train_seconds")) is not None else None,
            "note": r.get("note", ""), "error": r.get("error") or "",
        })
        rows.append(row)
    return rows


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """The results as a GitHub markdown table."""
    names = class_names(results)
    per_class = [f"Dice {name}" for _, name in names] if len(names) > 1 else []
    head = (["method", "student", "parameters", "ms / slice", "test Dice (mean ± sd)"] + per_class
            + ["HD95 mm", "ASSD mm", "val Dice", "training min", "note"])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in csv_rows(results):
        if row["status"] != "done":
            cells = [row["method"]] + ["–"] * (len(head) - 2) + [f"FAILED: {row['error']}"]
        else:
            dice = f"{_fmt(row['mean_dice'])} ± {_fmt(row['dice_sd'])}"
            cells = [row["method"], _fmt(row["student"]), f"{row['parameters']:,}" if row["parameters"] else "n/a",
                     _fmt(row["ms_per_slice"], 2), dice]
            cells += [_fmt(row[f"dice_{name}"]) for _, name in names] if per_class else []
            cells += [_fmt(row["hd95_mm"], 2), _fmt(row["assd_mm"], 2), _fmt(row["val_dice"]),
                      _fmt(row["train_minutes"], 1), row["note"]]
        lines.append("| " + " | ".join(_cell(str(c)) for c in cells) + " |")
    return "\n".join(lines)


def write_table_files(results: Sequence[dict[str, Any]], header: dict[str, Any], *, markdown: Path, csv_path: Path,
                      json_path: Path) -> str:
    """Write the markdown (a header list, then the table), CSV and JSON files; return the markdown.

    Args:
        results: one entry per method (see :func:`tskd.pipeline.comparison.runner.run_benchmark`).
        header: settings shown above the table and stored in the JSON (dataset, split, teacher...).
    """
    rows = csv_rows(results)
    table = markdown_table(results)
    lines = [f"- {key}: {value}" for key, value in header.get("summary", {}).items()]
    write_text(markdown, "\n".join(lines + ["", table, ""]))
    buffer = io.StringIO()
    columns = list(CSV_COLUMNS[0]) + [f"dice_{n}" for _, n in class_names(results)] + list(CSV_COLUMNS[1])
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_text(csv_path, buffer.getvalue(), newline="")
    write_json(json_path, finite_json({**header, "rows": rows, "methods": list(results)}))
    return table


def finite_json(value: Any) -> Any:
    """JSON has no NaN: undefined numbers are stored as null."""
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
