"""What the benchmark measures of a segmenter: test metrics, size and speed.

* :func:`test_metrics` segments the held-out test images or volumes with a slice model (the
  package's ONNX student, or the teacher behind a torch adapter) as Slicer would, and scores them
  at full resolution in their own geometry (:func:`tskd.pipeline.export_stage.score_slice_model`:
  Dice per class, HD95 and ASSD in mm), plus the spread of the per-case Dice;
* :func:`time_per_slice` times the model on a fixed batch of slices.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tskd.data.dataset import Dataset
from tskd.pipeline.export_stage import score_slice_model
from tskd.runtime import SliceModel, StudentPackage
from tskd.runtime.inference import context_slices

__all__ = ["test_metrics", "time_per_slice", "package_facts"]


def _sd(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(statistics.pstdev(finite)) if len(finite) > 1 else (0.0 if finite else float("nan"))


def test_metrics(model: SliceModel, dataset: Dataset, case_ids: list[str]) -> dict[str, Any]:
    """Full-resolution metrics of ``model`` on ``case_ids``.

    Returns:
        :func:`score_slice_model`'s summary (``mean_dice``, ``mean_hd95_mm``, ``mean_assd_mm``,
        ``per_class``, ``cases``...) plus ``dice_sd`` (standard deviation over cases of the per-case
        mean Dice) and, per class, ``dice_sd``.
    """
    if not case_ids:
        raise ValueError("no test cases to evaluate")
    summary = score_slice_model(model, dataset, case_ids)
    cases = summary["cases"]
    summary["dice_sd"] = _sd([c["mean_dice"] for c in cases])
    for label, entry in summary["per_class"].items():
        entry["dice_sd"] = _sd([c["dice"].get(label, float("nan")) for c in cases])
    return summary


def time_per_slice(model: SliceModel, *, batch_size: int = 16, repeats: int = 10, seed: int = 0) -> float:
    """Median milliseconds per slice of ``model.logits`` on a fixed batch of random slices.

    Args:
        model: the slice model (e.g. ``OnnxSegmenter(package, threads=...)``).
        batch_size: slices per call (the runtime's default batch).
        repeats: timed calls (after two warm-up calls); the median is reported.
        seed: seed of the batch's values (timing does not depend on them).
    """
    if batch_size < 1 or repeats < 1:
        raise ValueError(f"batch_size and repeats must be >= 1, got {batch_size} and {repeats}")
    size = model.input_size
    channels = 2 * context_slices(model) + 1
    batch = np.random.default_rng(seed).standard_normal((batch_size, channels, size, size)).astype(np.float32)
    for _ in range(2):
        model.logits(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.logits(batch)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times) / batch_size


def package_facts(package: Path) -> dict[str, Any]:
    """The student's architecture, parameter count and input size, and the teacher entry, from the package."""
    loaded = StudentPackage.load(package)
    student = loaded.student
    return {"student": student.get("architecture"), "parameters": student.get("parameters"),
            "input_size": loaded.input_size, "teacher": loaded.teacher}
