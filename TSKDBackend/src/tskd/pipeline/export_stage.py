"""Export stage: the run's model becomes the self-describing package Slicer loads (``RUN/package/``
and ``RUN/<run>.tskd.zip``), validated on the full-resolution validation volumes.

``tskd train`` exports both the distilled student and the supervised reference into
``RUN/candidates/`` and keeps the better one (:func:`export_run_model`, :mod:`tskd.pipeline.choice`);
the benchmark's baselines export their one student (:func:`run_export_stage`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tskd.atomic import replace_folder, write_json
from tskd.data.dataset import Dataset
from tskd.evaluation.metrics import case_metrics, summarize_metrics
from tskd.export.package import write_student_package, zip_package
from tskd.pipeline.choice import KINDS, compare_students
from tskd.runconfig import PipelineConfig
from tskd.pipeline.data_stage import PreparedData
from tskd.pipeline.run_folder import RunFolder, read_json
from tskd.pipeline.teacher_stage import teacher_entry
from tskd.runtime import OnnxSegmenter, SliceModel, StudentPackage, segment_volume
from tskd.runtime.box_model import BOX_MODEL_FOLDER
from tskd.student.base import StudentModel
from tskd.teacher.model import SamSegmenter

__all__ = ["run_export_stage", "export_run_model", "export_candidate", "validate_package", "score_slice_model",
           "teacher_entry", "validation_subjects"]

logger = logging.getLogger(__name__)


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


def _write_validated(folder: Path, data: PreparedData, student: StudentModel, teacher_info: dict[str, Any] | None,
                     stage_folder: Path) -> dict[str, Any]:
    """Write a package (ONNX checked against torch on validation slices) into ``folder`` and score it
    on the validation volumes; returns that validation ({} without validation volumes)."""
    stage = read_json(stage_folder / "stage.json")
    verify = data.val[: 16] if data.val.size else data.train_labelled[: 16]
    verify_inputs = np.asarray(data.prepared.images[np.sort(verify)], dtype=np.float32)[:, None]
    write_student_package(
        folder,
        student=student,
        labels=data.labels,
        input_size=data.input_size,
        slice_axis=data.slice_axis,
        normalization=data.normalization,
        teacher_info=teacher_entry(teacher_info) if teacher_info is not None else None,
        metrics={"slice_validation": stage["metrics"]},
        verify_inputs=verify_inputs,
    )
    validation = {}
    if data.split["val"] and data.dataset is not None:
        validation = validate_package(folder, data.dataset, data.split["val"])
    if validation:
        logger.info("export: %s: validation volumes: mean Dice %.4f, mean HD95 %.2f mm", folder.name,
                    validation["mean_dice"], validation["mean_hd95_mm"])
        _add_metrics(folder, validation)
    return validation


def run_export_stage(
    run: RunFolder,
    data: PreparedData,
    student: StudentModel,
    teacher_info: dict[str, Any] | None,
    *,
    stage_folder: Path | None = None,
) -> dict[str, Any]:
    """Write the package of one student into ``RUN/package``, validate it on the validation volumes,
    zip it (the benchmark's baselines; ``tskd train`` uses :func:`export_run_model`). Skipped when
    the package is already complete.

    Args:
        teacher_info: the teacher's ``teacher.json`` (None for a student trained without one).
        stage_folder: the student's stage folder, whose slice metrics the package records
            (default ``RUN/student/finetune``).
    """
    done = run.root / "export.json"
    if done.is_file():
        return read_json(done)
    validation = _write_validated(run.package, data, student, teacher_info, stage_folder or run.finetune)
    return _finish_export(run, validation, None)


def export_candidate(run: RunFolder, data: PreparedData, student: StudentModel, teacher_info: dict[str, Any] | None,
                     *, kind: str, stage_folder: Path) -> dict[str, Any]:
    """Export one of a run's two students into ``RUN/candidates/<kind>/`` and score it on the
    validation volumes; skipped when ``RUN/candidates/<kind>.json`` exists.

    Returns:
        ``{"kind", "folder", "validation"}``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    done = run.candidates / f"{kind}.json"
    if done.is_file():
        return read_json(done)
    folder = run.candidates / kind
    validation = _write_validated(folder, data, student, teacher_info, stage_folder)
    result = {"kind": kind, "folder": str(folder), "validation": {k: v for k, v in validation.items() if k != "cases"}}
    write_json(done, _finite(result))
    return result


def validation_subjects(data: PreparedData) -> int:
    """How many subjects the validation cases come from (cases when the dataset is not at hand)."""
    ids = data.split["val"]
    if data.dataset is None:
        return len(ids)
    return len({data.dataset.case(case_id).subject_id for case_id in ids})


def export_run_model(
    run: RunFolder,
    data: PreparedData,
    config: PipelineConfig,
    *,
    distilled: StudentModel,
    reference: StudentModel | None,
    teacher_info: dict[str, Any] | None,
    box_model: SamSegmenter | None = None,
) -> dict[str, Any]:
    """``tskd train``'s export: both students exported and scored as packages, the better one (see
    :mod:`tskd.pipeline.choice`) copied to ``RUN/package`` with the comparison in its metadata, and
    zipped. Each step is skipped when its file exists (``candidates/<kind>.json``, ``export.json``).
    With ``box_model`` (the task-tuned box model, ``RUN/teacher/box_model``) the package also holds
    its ONNX graphs in ``box_model/`` (:func:`tskd.export.export_box_model`; not in the zip, which
    Slicer downloads to segment: the box tool fetches them on their own).

    Args:
        distilled: the fine-tuned distilled student (``RUN/student/finetune``).
        reference: the labels-only student (``RUN/student/reference``); None when
            ``reference.enabled`` is False.
        teacher_info: the teacher's ``teacher.json``.

    Returns:
        the export summary (``folder``, ``archive``, ``validation``, ``result``, ``comparison``).
    """
    done = run.root / "export.json"
    if done.is_file():
        return read_json(done)
    scores = {"distilled": export_candidate(run, data, distilled, teacher_info, kind="distilled",
                                            stage_folder=run.finetune)}
    if reference is not None:
        scores["reference"] = export_candidate(run, data, reference, None, kind="reference", stage_folder=run.reference)
    comparison = compare_students(
        scores["distilled"]["validation"], scores.get("reference", {}).get("validation"),
        val_subjects=validation_subjects(data),
        min_val_subjects=config.reference.min_val_subjects,
        foundation_weights=bool((teacher_info or {}).get("has_foundation_weights")),
        enabled=reference is not None,
    )
    chosen = comparison["chosen"]
    logger.info("export: %s", comparison["verdict"])
    if comparison["warning"]:
        logger.warning("export: %s", comparison["warning"])
    work = Path(tempfile.mkdtemp(prefix=".package.", suffix=".tmp", dir=run.root))
    try:
        staged = work / "package"
        shutil.copytree(run.candidates / chosen, staged)
        meta = read_json(staged / "tskd-model.json")
        meta["kind"] = chosen
        meta["comparison"] = comparison
        # the run's teacher, whichever student is exported: a labels-only student learnt nothing from it
        # (its "teacher" is None), but the package still says which foundation model the run compared against
        meta["run_teacher"] = teacher_entry(teacher_info) if teacher_info is not None else None
        write_json(staged / "tskd-model.json", _finite(meta))
        if box_model is not None:
            _export_box_model(run, box_model, staged / BOX_MODEL_FOLDER)
        replace_folder(staged, run.package)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _finish_export(run, scores[chosen]["validation"], comparison)


def _export_box_model(run: RunFolder, model: SamSegmenter, folder: Path) -> None:
    """The task-tuned box model's graphs, named after the run and hashed by its tuned decoder's file."""
    from tskd.export.box_export import export_box_model, verify_on_pattern
    from tskd.teacher.checkpoints import file_sha256

    saved = run.teacher / BOX_MODEL_FOLDER
    weights = sorted(saved.glob("*.safetensors"))
    if not weights:
        raise FileNotFoundError(f"{saved}: the tuned box decoder's weights are missing; delete the folder to tune again")
    stage = read_json(saved / "stage.json") if (saved / "stage.json").is_file() else {}
    export_box_model(model, folder, name=f"{model.architecture} tuned on {run.root.name}",
                     checkpoint_sha256=file_sha256(weights[0]),
                     extra={"tuned": {"run": run.root.name, "metrics": _finite(stage.get("metrics") or {})}})
    verify_on_pattern(model, folder)


def _finish_export(run: RunFolder, validation: dict[str, Any], comparison: dict[str, Any] | None) -> dict[str, Any]:
    archive = zip_package(run.package)
    result: dict[str, Any] = {
        "folder": str(run.package),
        "archive": str(archive),
        "validation": validation,
        "result": (f"mean Dice {validation['mean_dice']:.3f} on {validation['n_cases']} validation volumes"
                   if validation else "no validation cases"),
    }
    if comparison is not None:
        result["comparison"] = comparison
        result["result"] += f", {comparison['chosen']} student"
    write_json(run.root / "export.json", _finite(result))
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
