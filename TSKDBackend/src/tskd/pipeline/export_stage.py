"""Export stage: the run's model becomes the self-describing package Slicer loads (``RUN/package/``
and ``RUN/<run>.tskd.zip``), validated on the full-resolution validation volumes.

``tskd train`` exports both the distilled student and the supervised reference into
``RUN/candidates/`` and keeps the better one (:func:`export_run_model`, :mod:`tskd.pipeline.choice`);
the benchmark's baselines export their one student (:func:`run_export_stage`).
"""

from __future__ import annotations

import logging
import math
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
from tskd.runconfig import ExportConfig, PipelineConfig
from tskd.pipeline.data_stage import PreparedData
from tskd.pipeline.run_folder import RunFolder, read_json
from tskd.pipeline.teacher_stage import teacher_entry
from tskd.runtime import (POSTPROCESSING_METHODS, OnnxSegmenter, SliceModel, StudentPackage, apply_postprocessing,
                          segment_volume)
from tskd.runtime.box_model import BOX_MODEL_FOLDER
from tskd.student.base import StudentModel
from tskd.teacher.model import SamSegmenter

__all__ = ["run_export_stage", "export_run_model", "export_candidate", "validate_package", "score_slice_model",
           "score_postprocessing", "choose_postprocessing", "teacher_entry", "validation_subjects"]

logger = logging.getLogger(__name__)


def score_slice_model(model: SliceModel, dataset: Dataset, case_ids: list[str]) -> dict[str, Any]:
    """Segment the labelled cases ``case_ids`` with ``model`` slice by slice (as Slicer would, with
    the model's own post-processing) and score the label maps at full resolution in their own
    geometry (Dice, HD95, ASSD in mm).

    Args:
        model: any :class:`tskd.runtime.SliceModel` (the ONNX student, a torch adapter of the teacher).
        dataset: the dataset holding the cases.
        case_ids: cases to score (unlabelled ones are skipped).

    Returns:
        :func:`summarize_metrics`'s summary plus ``cases``, the per-case metrics.
    """
    method = getattr(model, "postprocessing", None) or "none"
    return score_postprocessing(model, dataset, case_ids, (method,))[method]


def score_postprocessing(model: SliceModel, dataset: Dataset, case_ids: list[str],
                         methods: tuple[str, ...] = POSTPROCESSING_METHODS) -> dict[str, dict[str, Any]]:
    """:func:`score_slice_model`'s summary for each post-processing method: every case is segmented
    once, and each method is applied to that label map and scored."""
    table = dataset.label_table
    scored: dict[str, list] = {method: [] for method in methods}
    for case_id in case_ids:
        image, label = dataset.read_case(dataset.case(case_id))
        if label is None:
            continue
        raw = segment_volume(model, image.array, postprocessing="none")
        spacing = tuple(reversed(image.geometry.spacing))
        for method in methods:
            prediction = apply_postprocessing(raw, method, table.foreground_values)
            scored[method].append(case_metrics(prediction, label.array, labels=table.foreground_values,
                                               spacing=spacing, case_id=case_id))
    names = {label.value: label.name for label in table}
    out = {}
    for method, cases in scored.items():
        summary = summarize_metrics(cases, names)
        summary["cases"] = [c.to_dict() for c in cases]
        out[method] = summary
    return out


def choose_postprocessing(scores: dict[str, dict[str, Any]], settings: ExportConfig) -> dict[str, Any]:
    """The post-processing a package keeps (see :class:`tskd.runconfig.ExportConfig`).

    Args:
        scores: :func:`score_postprocessing`'s summaries on the validation cases (``none`` among them
            when ``settings.postprocessing`` is ``auto``).

    Returns:
        ``{"method", "decided_on", "min_gain", "val_dice": {method: mean Dice}}``.
    """
    val_dice = {method: summary["mean_dice"] for method, summary in scores.items()}
    n_cases = max((summary.get("n_cases", 0) for summary in scores.values()), default=0)
    if settings.postprocessing != "auto":
        return {"method": settings.postprocessing, "decided_on": "set in the config", "min_gain": None,
                "val_dice": val_dice}
    base = scores["none"]
    chosen, best_gain = "none", 0.0
    for method, summary in scores.items():
        gain = summary["mean_dice"] - base["mean_dice"]
        if method == "none" or not math.isfinite(gain) or gain < settings.postprocessing_min_gain:
            continue
        drops = [base["per_class"][key]["dice"] - entry["dice"] for key, entry in summary["per_class"].items()
                 if math.isfinite(entry["dice"]) and math.isfinite(base["per_class"][key]["dice"])]
        if max(drops, default=0.0) > settings.postprocessing_min_gain:
            continue
        if gain > best_gain:
            chosen, best_gain = method, gain
    return {"method": chosen, "decided_on": f"{n_cases} validation cases", "min_gain": settings.postprocessing_min_gain,
            "val_dice": val_dice}


def validate_package(package_folder: Path, dataset: Dataset, case_ids: list[str],
                     settings: ExportConfig | None = None) -> dict[str, Any]:
    """Score the exported ONNX student on ``case_ids`` (see :func:`score_slice_model`) with each
    post-processing method and choose one (:func:`choose_postprocessing`).

    Returns:
        the chosen method's summary, with the choice under ``postprocessing``.
    """
    settings = settings or ExportConfig()
    model = OnnxSegmenter(StudentPackage.load(package_folder))
    methods = POSTPROCESSING_METHODS if settings.postprocessing == "auto" else (settings.postprocessing,)
    scores = score_postprocessing(model, dataset, case_ids, methods)
    choice = choose_postprocessing(scores, settings)
    logger.info("export: %s: post-processing %s (%s; validation Dice %s)", package_folder.name, choice["method"],
                choice["decided_on"], ", ".join(f"{m} {d:.4f}" for m, d in choice["val_dice"].items()))
    summary = dict(scores[choice["method"]])
    summary["postprocessing"] = choice
    return summary


def _write_validated(folder: Path, data: PreparedData, student: StudentModel, teacher_info: dict[str, Any] | None,
                     stage_folder: Path, settings: ExportConfig | None = None) -> dict[str, Any]:
    """Write a package (ONNX checked against torch on validation slices) into ``folder``, score it
    on the validation volumes and keep the post-processing ``settings`` choose (default
    :class:`ExportConfig`'s); returns that validation ({} without validation volumes)."""
    settings = settings or ExportConfig()
    stage = read_json(stage_folder / "stage.json")
    verify = data.val[: 16] if data.val.size else data.train_labelled[: 16]
    verify_inputs = data.prepared.stacked(np.sort(verify))
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
        validation = validate_package(folder, data.dataset, data.split["val"], settings)
    if validation:
        logger.info("export: %s: validation volumes: mean Dice %.4f, mean HD95 %.2f mm", folder.name,
                    validation["mean_dice"], validation["mean_hd95_mm"])
        _add_metrics(folder, validation)
    elif settings.postprocessing not in ("auto", "none"):
        _record_postprocessing(folder, {"method": settings.postprocessing, "decided_on": "set in the config"})
    return validation


def run_export_stage(
    run: RunFolder,
    data: PreparedData,
    student: StudentModel,
    teacher_info: dict[str, Any] | None,
    *,
    stage_folder: Path | None = None,
    settings: ExportConfig | None = None,
) -> dict[str, Any]:
    """Write the package of one student into ``RUN/package``, validate it on the validation volumes,
    zip it (the benchmark's baselines; ``tskd train`` uses :func:`export_run_model`). Skipped when
    the package is already complete.

    Args:
        teacher_info: the teacher's ``teacher.json`` (None for a student trained without one).
        stage_folder: the student's stage folder, whose slice metrics the package records
            (default ``RUN/student/finetune``).
        settings: the run's ``export`` section (its post-processing choice).
    """
    done = run.root / "export.json"
    if done.is_file():
        return read_json(done)
    validation = _write_validated(run.package, data, student, teacher_info, stage_folder or run.finetune, settings)
    return _finish_export(run, validation, None)


def export_candidate(run: RunFolder, data: PreparedData, student: StudentModel, teacher_info: dict[str, Any] | None,
                     *, kind: str, stage_folder: Path, settings: ExportConfig | None = None) -> dict[str, Any]:
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
    validation = _write_validated(folder, data, student, teacher_info, stage_folder, settings)
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
                                            stage_folder=run.finetune, settings=config.export)}
    if reference is not None:
        scores["reference"] = export_candidate(run, data, reference, None, kind="reference", stage_folder=run.reference,
                                               settings=config.export)
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
    post = (validation or {}).get("postprocessing") or {}
    if post.get("method") not in (None, "none"):
        result["result"] += f", post-processing {post['method']}"
    write_json(run.root / "export.json", _finite(result))
    return result


def _add_metrics(folder: Path, validation: dict[str, Any]) -> None:
    """Record the volume-level validation metrics (those of the chosen post-processing) and that
    choice in the package's metadata."""
    meta_path = folder / "tskd-model.json"
    meta = read_json(meta_path)
    meta.setdefault("metrics", {})["volume_validation"] = {
        k: v for k, v in validation.items() if k not in ("cases", "postprocessing")
    }
    meta["metrics"]["val_dice"] = validation["mean_dice"]
    if "postprocessing" in validation:
        meta["postprocessing"] = validation["postprocessing"]
    write_json(meta_path, _finite(meta))


def _record_postprocessing(folder: Path, choice: dict[str, Any]) -> None:
    """Record a post-processing set in the config (no validation cases to score it on)."""
    meta_path = folder / "tskd-model.json"
    meta = read_json(meta_path)
    meta["postprocessing"] = choice
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
