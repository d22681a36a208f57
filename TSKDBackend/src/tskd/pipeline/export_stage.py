"""Export stage: the fine-tuned student becomes the self-describing package Slicer loads
(``RUN/package/`` and ``RUN/<run>.tskd.zip``), validated on the full-resolution validation volumes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tskd.atomic import write_json
from tskd.data.dataset import Dataset
from tskd.evaluation.metrics import case_metrics, summarize_metrics
from tskd.export.package import write_student_package, zip_package
from tskd.pipeline.data_stage import PreparedData
from tskd.pipeline.run_folder import RunFolder, read_json
from tskd.runtime import OnnxSegmenter, SliceModel, StudentPackage, segment_volume
from tskd.student.base import StudentModel

__all__ = ["run_export_stage", "validate_package", "score_slice_model", "teacher_entry"]

logger = logging.getLogger(__name__)


def teacher_entry(info: dict[str, Any]) -> dict[str, Any]:
    """What the package records about the teacher (from ``teacher.json``)."""
    base = info.get("base") or {}
    return {
        "architecture": info.get("architecture"),
        "base": Path(base["path"]).name if base.get("path") else None,
        "base_sha256": base.get("sha256"),
        "has_foundation_weights": bool(info.get("has_foundation_weights")),
    }


def score_slice_model(model: SliceModel, dataset: Dataset, case_ids: list[str]) -> dict[str, Any]:
    """Segment the labelled cases ``case_ids`` with ``model`` slice by slice (as Slicer would) and
    score the label maps at full resolution in their own geometry (Dice, HD95, ASSD in mm).

    Args:
        model: any :class:`tskd.runtime.SliceModel` (the ONNX student, a torch adapter of the teacher).
        dataset: the dataset holding the cases.
        case_ids: cases to score (unlabelled ones are skipped).

    Returns:
        :func:`summarize_metrics`'s summary plus ``cases``, the per-case metrics.
    """
    table = dataset.label_table
    cases = []
    for case_id in case_ids:
        image, label = dataset.read_case(dataset.case(case_id))
        if label is None:
            continue
        prediction = segment_volume(model, image.array)
        spacing = tuple(reversed(image.geometry.spacing))
        cases.append(case_metrics(prediction, label.array, labels=table.foreground_values, spacing=spacing,
                                  case_id=case_id))
    summary = summarize_metrics(cases, {label.value: label.name for label in table})
    summary["cases"] = [c.to_dict() for c in cases]
    return summary


def validate_package(package_folder: Path, dataset: Dataset, case_ids: list[str]) -> dict[str, Any]:
    """Score the exported ONNX student on ``case_ids`` (see :func:`score_slice_model`)."""
    return score_slice_model(OnnxSegmenter(StudentPackage.load(package_folder)), dataset, case_ids)


def run_export_stage(
    run: RunFolder,
    data: PreparedData,
    student: StudentModel,
    teacher_info: dict[str, Any] | None,
) -> dict[str, Any]:
    """Write the package (ONNX checked against torch on validation slices), validate it on the
    validation volumes, zip it. Skipped when the package is already complete.

    ``teacher_info`` is the teacher's ``teacher.json`` (None for a student trained without one)."""
    done = run.root / "export.json"
    if done.is_file():
        return read_json(done)
    finetune = read_json(run.finetune / "stage.json")
    verify = data.val[: 16] if data.val.size else data.train_labelled[: 16]
    verify_inputs = np.asarray(data.prepared.images[np.sort(verify)], dtype=np.float32)[:, None]
    write_student_package(
        run.package,
        student=student,
        labels=data.labels,
        input_size=data.input_size,
        slice_axis=data.slice_axis,
        normalization=data.normalization,
        teacher_info=teacher_entry(teacher_info) if teacher_info is not None else None,
        metrics={"slice_validation": finetune["metrics"]},
        verify_inputs=verify_inputs,
    )
    validation = {}
    if data.split["val"] and data.dataset is not None:
        validation = validate_package(run.package, data.dataset, data.split["val"])
    if validation:
        logger.info("export: validation volumes: mean Dice %.4f, mean HD95 %.2f mm", validation["mean_dice"],
                    validation["mean_hd95_mm"])
        _add_metrics(run.package, validation)
    archive = zip_package(run.package)
    result = {
        "folder": str(run.package),
        "archive": str(archive),
        "validation": validation,
        "result": (f"mean Dice {validation['mean_dice']:.3f} on {validation['n_cases']} validation volumes"
                   if validation else "no validation cases"),
    }
    write_json(done, result)
    return result


def _add_metrics(folder: Path, validation: dict[str, Any]) -> None:
    """Record the volume-level validation metrics in the package's metadata."""
    meta_path = folder / "tskd-model.json"
    meta = read_json(meta_path)
    meta.setdefault("metrics", {})["volume_validation"] = {
        k: v for k, v in validation.items() if k != "cases"
    }
    meta["metrics"]["val_dice"] = validation["mean_dice"]
    write_json(meta_path, _finite(meta))


def _finite(value: Any) -> Any:
    """JSON has no NaN: undefined metrics are stored as null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
