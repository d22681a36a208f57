"""Checking a dataset before training: read every file, summarise it, list what is wrong.

:func:`check_dataset` never raises for bad data: whatever cannot be used is listed in the
report's problems and ``usable`` says whether training can start. :func:`format_report` renders
the report as plain text for the person who prepared the data.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tskd.data.cases import ERROR, WARNING, Case, Problem, message_without_path
from tskd.data.dataset import Dataset, build_dataset
from tskd.data.readers import parallel_map, read_sitk_image
from tskd.errors import DataError

__all__ = ["DatasetReport", "check_dataset", "format_report"]

logger = logging.getLogger(__name__)

_MAX_LISTED = 20


@dataclass
class DatasetReport:
    """What :func:`check_dataset` found.

    Sizes are in voxels in ITK ``(i, j, k)`` order (width, height, slices); spacings in mm.

    Args:
        path: the dataset folder or manifest checked.
        layout: ``folders``, ``msd`` or ``manifest`` ('' when it could not be listed).
        dimension: 2 or 3 (0 when unknown or mixed).
        n_cases / n_labelled / n_unlabelled: usable cases.
        n_excluded: cases left out because of an error.
        n_subjects: distinct subjects among the usable labelled cases.
        sizes: ``{"min", "max"}`` per axis and ``"common"``: the most frequent sizes with counts.
        spacing: ``{"min", "median", "max"}`` per axis.
        spacing_source: file the spacings came from when not the images' own headers.
        label_values: label values found in the labels (after folding colour masks).
        label_names: value -> name.
        label_source: where the names come from.
        label_cases: value -> number of labelled cases that contain it.
        pixel_types: SimpleITK pixel type -> number of images.
        problems: every problem, errors first.
        fatal: why the dataset as a whole is unusable (empty when usable).
        usable: training can start (at least one labelled case, no fatal problem).
        read_pixels: whether every pixel was read (else headers only).
        seconds: time taken.
    """

    path: str
    layout: str = ""
    dimension: int = 0
    n_cases: int = 0
    n_labelled: int = 0
    n_unlabelled: int = 0
    n_excluded: int = 0
    n_subjects: int = 0
    sizes: dict[str, Any] = field(default_factory=dict)
    spacing: dict[str, list[float]] = field(default_factory=dict)
    spacing_source: str | None = None
    label_values: list[int] = field(default_factory=list)
    label_names: dict[int, str] = field(default_factory=dict)
    label_source: str = ""
    label_cases: dict[int, int] = field(default_factory=dict)
    pixel_types: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    fatal: list[str] = field(default_factory=list)
    usable: bool = False
    read_pixels: bool = True
    seconds: float = 0.0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "layout": self.layout, "dimension": self.dimension, "usable": self.usable,
            "n_cases": self.n_cases, "n_labelled": self.n_labelled, "n_unlabelled": self.n_unlabelled,
            "n_excluded": self.n_excluded, "n_subjects": self.n_subjects, "sizes": self.sizes,
            "spacing": self.spacing, "spacing_source": self.spacing_source, "label_values": self.label_values,
            "label_names": {str(k): v for k, v in self.label_names.items()}, "label_source": self.label_source,
            "label_cases": {str(k): v for k, v in self.label_cases.items()}, "pixel_types": self.pixel_types,
            "fatal": self.fatal, "problems": [p.to_dict() for p in self.problems],
            "read_pixels": self.read_pixels, "seconds": round(self.seconds, 2),
        }


def _check_image(case: Case) -> tuple[Case, str | None, str | None]:
    """(case, error, warning) after decoding every pixel of the case's image."""
    try:
        image = read_sitk_image(case.image_path, "image")
    except DataError as exc:
        return case, message_without_path(str(exc), case.image_path), None
    array = image.array
    if array.size == 0:
        return case, "the image has no pixels", None
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        return case, f"the image has {bad} NaN or infinite values; fix or remove them", None
    low, high = array.min(), array.max()
    if low == high:
        return case, None, f"every pixel has the same value ({low}); the image carries no information"
    return case, None, None


def _read_pixels(dataset: Dataset, workers: int | None) -> None:
    dataset.scan_labels(workers)  # labels: values, folding, fit to image; bad ones are left out
    for case, error, warning in parallel_map(_check_image, list(dataset.cases), workers):
        if error:
            dataset.exclude(case, error + " (case left out)", case.image_path)
        elif warning:
            dataset.problems.append(Problem(WARNING, case.image_path, warning, case.case_id))
    values = dataset.scan_labels()
    for case in dataset.labelled:
        if values.get(case.case_id) == {0}:
            dataset.problems.append(Problem(WARNING, case.label_path, "the label is empty (background only); it is "
                                            "used as an example without any structure", case.case_id))


def _summary(values: list[list[float]]) -> dict[str, list[float]]:
    array = np.asarray(values, dtype=float)
    return {
        "min": [round(float(v), 6) for v in array.min(axis=0)],
        "median": [round(float(v), 6) for v in np.median(array, axis=0)],
        "max": [round(float(v), 6) for v in array.max(axis=0)],
    }


def check_dataset(
    path: str | Path, *, subject_pattern: str | None = None, read_pixels: bool = True, workers: int | None = None
) -> DatasetReport:
    """Check a dataset folder or manifest and summarise it.

    Args:
        path: dataset folder or manifest (as for :func:`tskd.data.dataset.load_dataset`).
        subject_pattern: regular expression whose first group is a case name's subject id.
        read_pixels: decode every image and label (finds truncated files, label values, empty
            labels); False reads headers only.
        workers: threads for reading (default: up to 4).

    Returns:
        The report; ``report.usable`` tells whether training can start.
    """
    start = time.monotonic()
    report = DatasetReport(path=str(path), read_pixels=read_pixels)
    try:
        dataset = build_dataset(path, subject_pattern=subject_pattern, workers=workers)
    except DataError as exc:
        report.fatal = [str(exc)]
        report.problems = [Problem(ERROR, Path(path), message_without_path(str(exc), Path(path)))]
        report.seconds = time.monotonic() - start
        return report
    if read_pixels and dataset.cases:
        _read_pixels(dataset, workers)
    report.layout = dataset.layout
    report.dimension = dataset.dimension
    report.n_cases = len(dataset.cases)
    report.n_labelled = len(dataset.labelled)
    report.n_unlabelled = len(dataset.unlabelled)
    report.n_excluded = len({p.case_id for p in dataset.errors if p.case_id})
    report.n_subjects = len({c.subject_id for c in dataset.labelled})
    report.spacing_source = dataset.spacing_source
    if dataset.cases:
        geometries = [dataset.geometry(c) for c in dataset.cases]
        same_dim = [g for g in geometries if g.dimension == max(g.dimension for g in geometries)]
        sizes = [list(g.size) for g in same_dim]
        report.sizes = {"min": list(np.min(sizes, axis=0).tolist()), "max": list(np.max(sizes, axis=0).tolist()),
                        "common": [[list(s), n] for s, n in Counter(tuple(s) for s in sizes).most_common(3)]}
        report.spacing = _summary([list(g.spacing) for g in same_dim])
        report.pixel_types = dict(Counter(dataset.header(c).pixel_type for c in dataset.cases).most_common())
    if read_pixels and dataset.labelled:
        table = dataset.label_table
        values = dataset.scan_labels()
        found = sorted(set().union(*values.values())) if values else []
        report.label_values = found
        report.label_cases = {v: sum(v in s for s in values.values()) for v in found}
    else:
        table = dataset.declared_label_table
    if table is not None:
        report.label_names = {label.value: label.name for label in table}
        report.label_source = table.source
    report.problems = [p for p in dataset.problems if p.severity == ERROR] + dataset.warnings
    report.fatal = list(dataset.fatal)
    report.usable = dataset.usable
    report.seconds = time.monotonic() - start
    return report


def _axes(values: list[Any], unit: str = "", digits: int = 4) -> str:
    return " x ".join(f"{v:.{digits}g}" if isinstance(v, float) else str(v) for v in values) + unit


def format_report(report: DatasetReport) -> str:
    """A readable summary of ``report`` (plain text, a few dozen lines at most)."""
    lines = [f"Dataset:   {report.path}"]
    if report.layout:
        dimension = f", {report.dimension}D images" if report.dimension else ""
        lines.append(f"Layout:    {report.layout}{dimension}")
        left_out = f"; {report.n_excluded} left out" if report.n_excluded else ""
        lines.append(f"Cases:     {report.n_cases} usable ({report.n_labelled} labelled, "
                     f"{report.n_unlabelled} unlabelled){left_out}")
        lines.append(f"Subjects:  {report.n_subjects} among the labelled cases")
    if report.sizes:
        unit = " pixels" if report.dimension == 2 else " voxels"
        common = ", ".join(f"{_axes(s)} ({n})" for s, n in report.sizes["common"])
        lines.append(f"Size:      {_axes(report.sizes['min'])} to {_axes(report.sizes['max'])}{unit}; "
                     f"most common: {common}")
    if report.spacing:
        source = f" (from {report.spacing_source})" if report.spacing_source else ""
        lines.append(f"Spacing:   min {_axes(report.spacing['min'])}, median {_axes(report.spacing['median'])}, "
                     f"max {_axes(report.spacing['max'])} mm{source}")
    if report.pixel_types:
        lines.append("Pixels:    " + ", ".join(f"{t} ({n})" for t, n in report.pixel_types.items()))
    if report.label_values or report.label_names:
        lines.append(f"Labels:    names from {report.label_source or 'defaults'}")
        for value in sorted(set(report.label_values) | set(report.label_names)):
            name = report.label_names.get(value, f"label_{value}")
            count = f"in {report.label_cases[value]} labelled cases" if value in report.label_cases else (
                "not found in any label" if report.read_pixels else "")
            lines.append(f"  {value:>5}  {name:<24} {count}".rstrip())
    errors, warnings = report.errors, report.warnings
    lines.append(f"Problems:  {len(errors)} errors, {len(warnings)} warnings")
    for group in (errors, warnings):
        for problem in group[:_MAX_LISTED]:
            lines.append(f"  {problem}")
        if len(group) > _MAX_LISTED:
            lines.append(f"  ... and {len(group) - _MAX_LISTED} more {group[0].severity}s (use --json FILE for all)")
    if not report.read_pixels:
        lines.append("Note:      headers only; pixels were not read")
    if report.usable:
        lines.append(f"Result:    USABLE: {report.n_labelled} labelled cases can be used for training "
                     f"(checked in {report.seconds:.1f} s)")
    else:
        lines.append("Result:    NOT USABLE: " + "; ".join(report.fatal or ["no labelled case is usable"]))
    return "\n".join(lines)
