"""Scoring label-map files against references (``tskd evaluate``).

Predictions and references are paired by case name, whatever their file formats
(``case_01.nii.gz`` pairs with ``case_01.seg.nrrd``; label-style suffixes such as ``_seg`` or
``_mask`` and nnU-Net's ``_0000`` are ignored when the plain names do not match). Each pair must
overlay (same grid); metrics are computed with the spacing of that grid, per numpy axis, in mm.
Label names come from ``--labels``, the reference dataset's ``labels.json`` / ``dataset.json``, or
defaults. 2D pictures without a pixel size (PNG...) take it from a pixel-size CSV in the reference
dataset folder, as the data layer does (e.g. HC18's ``pixel_size_and_hc.csv``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tskd.atomic import write_text
from tskd.data.discover import LABEL_DIRS, list_images, read_spacing_csv, stem_of
from tskd.data.image import Geometry, Image, is_image_path
from tskd.data.labels import LabelTable
from tskd.data.readers import read_sitk_image
from tskd.errors import DataError
from tskd.evaluation.metrics import CaseMetrics, case_metrics, summarize_metrics

__all__ = ["EvaluationReport", "evaluate_files", "pair_cases", "find_label_table", "format_table", "write_metrics"]

logger = logging.getLogger(__name__)

_EXTRA_SUFFIX = re.compile(
    r"([_-](mask|masks|label|labels|seg|segmentation|annotation|gt|pred|prediction|\d{4}))+$", re.IGNORECASE
)


@dataclass
class EvaluationReport:
    """Metrics of every paired case, their summary, and what could not be paired."""

    cases: list[CaseMetrics]
    summary: dict[str, Any]
    label_names: dict[int, str]
    pairs: list[tuple[str, Path, Path]]
    unmatched_predictions: list[Path] = field(default_factory=list)
    missing_predictions: list[Path] = field(default_factory=list)
    label_source: str = ""
    spacing_source: str = ""
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _nan_to_none({
            "labels": {str(k): v for k, v in self.label_names.items()},
            "label_source": self.label_source,
            "spacing_source": self.spacing_source or "image headers",
            "pairs": [{"case_id": c, "prediction": str(p), "reference": str(r)} for c, p, r in self.pairs],
            "cases": [case.to_dict() for case in self.cases],
            "summary": self.summary,
            "unmatched_predictions": [str(p) for p in self.unmatched_predictions],
            "missing_predictions": [str(p) for p in self.missing_predictions],
        })


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _reference_folder(ref: Path) -> Path:
    """A dataset folder's label subfolder (``labels/``, ``labelsTr/``...), else ``ref`` itself."""
    if ref.is_dir() and not is_image_path(ref):
        children = {p.name.lower(): p for p in ref.iterdir() if p.is_dir()}
        for name in LABEL_DIRS:
            if name in children and not any(is_image_path(p) for p in ref.iterdir() if p.is_file()):
                return children[name]
    return ref


def _files(path: Path, what: str) -> list[Path]:
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    if path.is_file() or is_image_path(path):
        return [path]
    problems: list[Any] = []
    files = list_images(path, problems)
    if not files:
        raise DataError(f"{path}: holds no {what} files")
    return files


def _keys(path: Path) -> tuple[str, str]:
    stem = stem_of(path).lower()
    return stem, _EXTRA_SUFFIX.sub("", stem)


def pair_cases(pred: str | Path, ref: str | Path) -> tuple[list[tuple[str, Path, Path]], list[Path], list[Path]]:
    """Pair prediction and reference files by case name (file suffix-insensitive).

    Args:
        pred: a label file or a folder of them.
        ref: a label file, a folder of them, or a dataset folder with a ``labels/`` subfolder.

    Returns:
        ``(pairs, unmatched_predictions, missing_predictions)``; pairs are ``(case_id, pred, ref)``.
    """
    pred, ref = Path(pred).expanduser(), Path(ref).expanduser()
    preds = _files(pred, "prediction")
    refs = _files(_reference_folder(ref), "reference")
    if len(preds) == 1 and len(refs) == 1 and (pred.is_file() or ref.is_file()):
        return [(stem_of(refs[0]), preds[0], refs[0])], [], []
    by_key: dict[str, list[Path]] = {}
    for path in preds:
        for key in set(_keys(path)):
            by_key.setdefault(key, []).append(path)
    pairs, used = [], set()
    missing = []
    for path in refs:
        exact, loose = _keys(path)
        found = [p for p in by_key.get(exact, []) if p not in used]
        if len(found) != 1:
            found = [p for p in by_key.get(loose, []) if p not in used and loose in _keys(p)]
        if len(found) == 1:
            pairs.append((stem_of(path), found[0], path))
            used.add(found[0])
        else:
            missing.append(path)
    unmatched = [p for p in preds if p not in used]
    if pred.is_file():
        missing = []  # one prediction asked about: the other references are not missing
    return pairs, unmatched, missing


def find_label_table(ref: str | Path, labels: str | Path | None = None) -> LabelTable | None:
    """The label table: ``labels`` (a labels.json or dataset.json), else one in the reference dataset."""
    if labels is not None:
        path = Path(labels).expanduser()
        if path.name.lower() == "dataset.json":
            return LabelTable.from_dataset_json(path)
        return LabelTable.from_labels_json(path)
    ref = Path(ref).expanduser()
    folder = ref if ref.is_dir() and not is_image_path(ref) else ref.parent
    for candidate in dict.fromkeys((folder, _dataset_folder(ref))):
        if (candidate / "labels.json").is_file():
            return LabelTable.from_labels_json(candidate / "labels.json")
        if (candidate / "dataset.json").is_file():
            return LabelTable.from_dataset_json(candidate / "dataset.json")
    return None


def _dataset_folder(ref: Path) -> Path:
    """The folder that may hold labels.json, dataset.json or a pixel-size CSV for ``ref``."""
    folder = ref if ref.is_dir() and not is_image_path(ref) else ref.parent
    return folder.parent if folder.name.lower() in LABEL_DIRS else folder


def _pixel_sizes(ref: Path) -> tuple[dict[str, tuple[float, ...]], str]:
    """Pixel sizes of 2D pictures from a CSV in the reference dataset (see :mod:`tskd.data.discover`)."""
    for path in sorted(_dataset_folder(ref).glob("*.csv")):
        table = read_spacing_csv(path)
        if table is not None:
            return table, path.name
    return {}, ""


def _spacing_of(reference: Image, path: Path, sizes: dict[str, tuple[float, ...]]) -> tuple[float, ...]:
    """Voxel size per numpy axis (reversed ITK spacing); a CSV pixel size for 2D files without one."""
    spacing = tuple(reference.geometry.spacing)
    if sizes and reference.dimension == 2 and all(s == 1.0 for s in spacing):
        for key in (path.name.lower(), *_keys(path)):
            if key in sizes:
                found = sizes[key]
                spacing = found * 2 if len(found) == 1 else tuple(found)
                break
    return tuple(reversed(spacing))


def _as_2d(image: Image) -> Image:
    """A one-slice 3D label (a 2D prediction saved as ``.seg.nrrd``) as a 2D image."""
    geometry = image.geometry
    if image.dimension != 3 or geometry.size[2] != 1:
        return image
    d = geometry.direction
    flat = Geometry(geometry.size[:2], geometry.spacing[:2], geometry.origin[:2], (d[0], d[1], d[3], d[4]))
    return Image(image.array[0], flat, image.path, image.metadata)


def _read_pair(pred: Path, ref: Path, table: LabelTable | None) -> tuple[Image, Image]:
    reference = read_sitk_image(ref, kind="label", label_table=table)
    prediction = read_sitk_image(pred, kind="label", label_table=table)
    if prediction.dimension != reference.dimension:
        prediction, reference = _as_2d(prediction), _as_2d(reference)
    why = reference.geometry.mismatch(prediction.geometry)
    if why is not None:
        raise DataError(f"{pred}: does not overlay its reference {ref} ({why}); predict on the reference's own "
                        "image, or resample the prediction onto the reference grid")
    return prediction, reference


def evaluate_files(
    pred: str | Path,
    ref: str | Path,
    *,
    labels: str | Path | None = None,
    out: str | Path | None = None,
    surface: bool = True,
    on_case: Callable[[int, int, CaseMetrics], None] | None = None,
) -> EvaluationReport:
    """Dice, HD95 and ASSD (mm) of every prediction against its reference.

    Args:
        pred: a label file or a folder of them.
        ref: a label file, a folder, or a dataset folder (its ``labels/`` subfolder is used).
        labels: a ``labels.json`` / ``dataset.json`` naming the labels (default: the reference
            dataset's, else ``label_<v>``). Declared labels are always scored; without a table the
            labels found in each pair are.
        out: folder for ``metrics.csv`` and ``metrics.json`` (None: write nothing).
        surface: also compute HD95 and ASSD (slower).
        on_case: called as ``on_case(position, total, metrics)`` after each case.

    Raises:
        DataError: nothing to pair, or a pair that does not overlay.
    """
    pairs, unmatched, missing = pair_cases(pred, ref)
    if not pairs:
        raise DataError(f"no prediction in {pred} has the case name of a reference in {ref}; name predictions "
                        "after their reference cases (e.g. case_01.nii.gz for case_01.nii.gz)")
    for paths, what in ((unmatched, "prediction(s) without a reference"), (missing, "reference(s) without a prediction")):
        if paths:
            shown = ", ".join(p.name for p in paths[:5]) + (", ..." if len(paths) > 5 else "")
            logger.warning("%d %s, not scored: %s", len(paths), what, shown)
    table = find_label_table(ref, labels)
    sizes, size_source = _pixel_sizes(Path(ref).expanduser())
    cases = []
    names = {label.value: label.name for label in table} if table is not None else {}
    for position, (case_id, pred_path, ref_path) in enumerate(pairs, start=1):
        prediction, reference = _read_pair(pred_path, ref_path, table)
        present = set(np.unique(prediction.array).tolist()) | set(np.unique(reference.array).tolist())
        values = set(table.foreground_values) if table is not None else set()
        extra = sorted(int(v) for v in present - values - {0})
        if table is not None and extra:
            logger.warning("%s: label values %s are not in the label table; scored as label_<v>", case_id, extra)
        values |= set(extra)
        spacing = _spacing_of(reference, ref_path, sizes)
        metrics = case_metrics(prediction.array, reference.array, labels=sorted(values), spacing=spacing,
                               case_id=case_id, surface=surface)
        cases.append(metrics)
        for value in extra:
            names.setdefault(value, f"label_{value}")
        if on_case is not None:
            on_case(position, len(pairs), metrics)
    names.pop(0, None)
    report = EvaluationReport(
        cases=cases, summary=summarize_metrics(cases, names), label_names=dict(sorted(names.items())), pairs=pairs,
        unmatched_predictions=unmatched, missing_predictions=missing,
        label_source=table.source if table is not None else "values found", spacing_source=size_source,
    )
    if out is not None:
        report.files = write_metrics(report, out)
    return report


def write_metrics(report: EvaluationReport, out: str | Path) -> dict[str, Path]:
    """Write ``metrics.csv`` (one row per case and class, then the means) and ``metrics.json``."""
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    rows = [["case_id", "label", "name", "dice", "hd95_mm", "assd_mm"]]

    def number(value: float | None) -> str:
        return "" if value is None or math.isnan(value) else f"{value:.6g}"

    for case in report.cases:
        for label in sorted(case.dice):
            rows.append([case.case_id, str(label), report.label_names.get(label, f"label_{label}"),
                         number(case.dice.get(label)), number(case.hd95_mm.get(label)), number(case.assd_mm.get(label))])
    for label, entry in report.summary["per_class"].items():
        rows.append(["mean", label, entry["name"], number(entry["dice"]), number(entry["hd95_mm"]),
                     number(entry["assd_mm"])])
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    csv_path, json_path = out / "metrics.csv", out / "metrics.json"
    write_text(csv_path, buffer.getvalue(), newline="")
    write_text(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
    return {"csv": csv_path, "json": json_path}


def format_table(report: EvaluationReport) -> str:
    """The per-class means (Dice, HD95 mm, ASSD mm) and their mean over classes, as aligned text."""
    def cell(value: float) -> str:
        return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"

    summary = report.summary
    width = max([len(f"{k} {v}") for k, v in report.label_names.items()] + [12])
    lines = [f"{'class':<{width}}  {'Dice':>7}  {'HD95 mm':>8}  {'ASSD mm':>8}",
             "-" * (width + 31)]
    for label, entry in summary["per_class"].items():
        lines.append(f"{label + ' ' + entry['name']:<{width}}  {cell(entry['dice']):>7}  "
                     f"{cell(entry['hd95_mm']):>8}  {cell(entry['assd_mm']):>8}")
    lines.append("-" * (width + 31))
    lines.append(f"{'mean':<{width}}  {cell(summary['mean_dice']):>7}  {cell(summary['mean_hd95_mm']):>8}  "
                 f"{cell(summary['mean_assd_mm']):>8}")
    lines.append(f"{summary['n_cases']} cases")
    return "\n".join(lines)
