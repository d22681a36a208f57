"""Baseline: MAE pre-training of a ViT student on all task images, then fine-tuning.

MONAI's ``MaskedAutoEncoderViT`` learns to reconstruct masked patches of every training image
(labelled and unlabelled, no labels used); its encoder initialises the ViT student
(:func:`tskd.student.mae.transfer_mae_encoder`), which is then fine-tuned on the labelled cases
like TS-KD's student.

MAE needs a ViT. When the config's student is a U-Net (``unet_small`` in the CPU presets), this
method switches to the ViT student :data:`FALLBACK_STUDENT` and its table row says so, rather
than dropping the paper's baseline: its parameter count and speed are then those of a ViT.

Budget rule: pre-training gets as many steps as TS-KD's distillation (``mae.train.max_steps`` is
set to ``distill.train.max_steps``; the other MAE settings stay), fine-tuning TS-KD's.
"""

from __future__ import annotations

import logging
from typing import Any

from tskd.runconfig import PipelineConfig
from tskd.pipeline.data_stage import PreparedData
from tskd.pipeline.comparison.methods.base import Method, export_student, with_changes
from tskd.pipeline.run_folder import RunFolder, read_json
from tskd.pipeline.stage import StageContext
from tskd.pipeline.student_stage import new_student, run_finetune_stage, run_mae_stage
from tskd.student.specs import VIT_SPECS

__all__ = ["MAE", "FALLBACK_STUDENT"]

logger = logging.getLogger(__name__)

#: The ViT student used when the config's student is not a ViT (the paper's student).
FALLBACK_STUDENT = "vit_tiny"


def _configure(config: PipelineConfig) -> tuple[PipelineConfig, str]:
    steps = config.distill.train.max_steps
    changes: dict[str, Any] = {"mae": {"train": {
        "max_steps": steps,
        "warmup_steps": min(config.mae.train.warmup_steps, max(0, steps // 10)),
        "validate_every": min(config.mae.train.validate_every, steps),
        "checkpoint_every": min(config.mae.train.checkpoint_every, steps),
    }}}
    note = ""
    if config.distill.student not in VIT_SPECS:
        changes["distill"] = {"student": FALLBACK_STUDENT}
        note = f"{FALLBACK_STUDENT} student: MAE needs a ViT (configured student: {config.distill.student})"
    return with_changes(config, changes, why="mae"), note


def _stages(run: RunFolder, data: PreparedData, config: PipelineConfig, context: StageContext,
            summary: dict[str, Any]) -> None:
    from tskd.student.mae import transfer_mae_encoder  # lazy: MONAI, only when this method runs

    mae = run_mae_stage(run, data, config, context.at(1, 2))
    summary["stages"]["mae"] = {"folder": str(run.mae), **{k: v for k, v in read_json(run.mae / "stage.json").items()
                                                           if k in ("metrics", "steps", "seconds")}}
    student = new_student(config, data)
    transfer_mae_encoder(mae, student)
    student = run_finetune_stage(run, data, config, student, context.at(2, 2))
    export_student(run, data, student, None, summary, settings=config.export)


MAE = Method(
    name="mae",
    title="MAE-pretrained ViT student (all task images), then fine-tune",
    needs_teacher=False,
    configure=_configure,
    model_stages=_stages,
)
