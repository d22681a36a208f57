"""What a training method of the benchmark is: a config transform plus the stages it runs.

Every method trains one student on the run's prepared data and exports it with the export stage,
so that the benchmark evaluates every method's package the same way. Methods reuse the pipeline's
stages and the engine's one training loop; none has a training loop of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from tskd.config import deep_merge
from tskd.runconfig import ExportConfig, PipelineConfig
from tskd.pipeline.data_stage import PreparedData
from tskd.pipeline.export_stage import run_export_stage
from tskd.pipeline.run import ModelStages
from tskd.pipeline.run_folder import RunFolder, read_json
from tskd.student.base import StudentModel

__all__ = ["Method", "with_changes", "export_student", "student_summary"]


@dataclass(frozen=True)
class Method:
    """One way of training a student that the benchmark compares.

    Attributes:
        name: registry name (``tskd``, ``labelled_only``...).
        title: a short description for tables.
        needs_teacher: the method uses the task's fine-tuned teacher (its run folder receives the
            benchmark's shared teacher stage).
        configure: the method's own pipeline config made from the benchmark's, and a note for the
            results table ("" when there is nothing to say).
        model_stages: what runs after the data stage (see :data:`tskd.pipeline.run.ModelStages`);
            None runs TS-KD's own stages (teacher, synthesis, distillation, fine-tuning, export).
    """

    name: str
    title: str
    needs_teacher: bool
    configure: Callable[[PipelineConfig], tuple[PipelineConfig, str]]
    model_stages: ModelStages | None = None


def with_changes(config: PipelineConfig, changes: Mapping[str, Any], *, why: str) -> PipelineConfig:
    """``config`` with a nested mapping of changes applied (checked like any config).

    Args:
        config: the benchmark's config.
        changes: e.g. ``{"synthesis": {"enabled": False}}``.
        why: names the method in error messages.
    """
    return PipelineConfig.from_dict(deep_merge(config.to_dict(), changes), source=f"benchmark method {why}")


def student_summary(folder: Path) -> dict[str, Any]:
    """What a finished student stage folder reports (``stage.json``): metrics, steps, parameters."""
    stage = read_json(folder / "stage.json")
    return {"folder": str(folder), "metrics": stage["metrics"], "parameters": stage["parameters"],
            "steps": stage.get("steps"), "seconds": stage.get("seconds")}


def export_student(run: RunFolder, data: PreparedData, student: StudentModel, teacher_info: dict[str, Any] | None,
                   summary: dict[str, Any], *, stage_folder: Path | None = None, key: str = "finetune",
                   settings: ExportConfig | None = None) -> None:
    """The export stage for a baseline's student, recorded in ``summary``.

    Args:
        settings: the method's ``export`` section (its post-processing choice).
        stage_folder: the student's stage folder (default ``RUN/student/finetune``).
        key: the summary's name for that stage.
    """
    folder = stage_folder or run.finetune
    summary["stages"][key] = student_summary(folder)
    summary["stages"]["package"] = run_export_stage(run, data, student, teacher_info, stage_folder=folder,
                                                    settings=settings)
