"""Baseline: the student trained from scratch on the labelled cases only (Dice + CE).

Budget rule: the same number of optimisation steps as TS-KD gives its student, distillation plus
fine-tuning (``distill.train.max_steps + finetune.train.max_steps``), with the distillation stage's
other training settings (learning rate, batch size, warm-up: those of a student trained from
scratch). The training runs as the fine-tuning stage (``RUN/student/finetune``) so that the export
stage finds it.
"""

from __future__ import annotations

from typing import Any

from tskd.pipeline.config import PipelineConfig
from tskd.pipeline.data_stage import PreparedData
from tskd.pipeline.methods.base import Method, export_student, with_changes
from tskd.pipeline.run_folder import RunFolder
from tskd.pipeline.student_stage import StageContext, new_student, run_finetune_stage

__all__ = ["LABELLED_ONLY", "supervised_budget"]


def supervised_budget(config: PipelineConfig) -> dict[str, Any]:
    """The labelled-only training settings: the distill section's, for distill + finetune steps."""
    train = config.distill.train.to_dict()
    train["max_steps"] = config.distill.train.max_steps + config.finetune.train.max_steps
    return train


def _configure(config: PipelineConfig) -> tuple[PipelineConfig, str]:
    train = supervised_budget(config)
    changed = with_changes(config, {"finetune": {"train": train}}, why="labelled_only")
    return changed, f"no teacher; {train['max_steps']} supervised steps (distill + fine-tune budget)"


def _stages(run: RunFolder, data: PreparedData, config: PipelineConfig, context: StageContext,
            summary: dict[str, Any]) -> None:
    student = new_student(config, data)
    student = run_finetune_stage(run, data, config, student, context, stage="labelled_only")
    export_student(run, data, student, None, summary)


LABELLED_ONLY = Method(
    name="labelled_only",
    title="student trained from scratch on the labelled cases only",
    needs_teacher=False,
    configure=_configure,
    model_stages=_stages,
)
