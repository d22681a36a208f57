"""Baseline: the student trained from scratch on the labelled cases only (Dice + CE).

This is the supervised reference that every ``tskd train`` run also trains
(:func:`tskd.pipeline.student_stage.run_reference_stage`, in ``RUN/student/reference``): one
implementation, so the benchmark's ``labelled_only`` row is exactly what a run compares its
distilled student with.

Budget rule: the same number of optimisation steps as TS-KD gives its student, distillation plus
fine-tuning (``distill.train.max_steps + finetune.train.max_steps``), with the distillation stage's
other training settings (learning rate, batch size, warm-up: those of a student trained from
scratch); see :func:`~tskd.pipeline.student_stage.supervised_budget`.
"""

from __future__ import annotations

from typing import Any

from tskd.runconfig import PipelineConfig
from tskd.pipeline.data_stage import PreparedData
from tskd.pipeline.comparison.methods.base import Method, export_student
from tskd.pipeline.run_folder import RunFolder
from tskd.pipeline.stage import StageContext
from tskd.pipeline.student_stage import run_reference_stage, supervised_budget

__all__ = ["LABELLED_ONLY", "supervised_budget"]


def _configure(config: PipelineConfig) -> tuple[PipelineConfig, str]:
    steps = supervised_budget(config).max_steps
    members = config.reference.members
    ensemble = f"; an ensemble of {members} such students (reference.members)" if members > 1 else ""
    return config, f"no teacher; {steps} supervised steps (distill + fine-tune budget){ensemble}"


def _stages(run: RunFolder, data: PreparedData, config: PipelineConfig, context: StageContext,
            summary: dict[str, Any]) -> None:
    student = run_reference_stage(run, data, config, context, stage="labelled_only")
    export_student(run, data, student, None, summary, stage_folder=run.reference, key="reference",
                   settings=config.export)


LABELLED_ONLY = Method(
    name="labelled_only",
    title="student trained from scratch on the labelled cases only",
    needs_teacher=False,
    configure=_configure,
    model_stages=_stages,
)
