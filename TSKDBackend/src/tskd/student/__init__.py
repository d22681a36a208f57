"""The students of TS-KD: networks, distillation losses, training tasks and MAE pre-training.

Build a student by name with :func:`build_student`; hand a task (:class:`DistillationTask`,
:class:`SupervisedTask`, :class:`FeatureDistillationTask`, :class:`MAETask`) and the model to the
engine's training loop.
"""

from __future__ import annotations

from tskd.student.base import (
    FeatureProjector,
    StudentModel,
    StudentWithProjector,
    count_parameters,
    parameter_summary,
    unwrap_student,
)
from tskd.student.config import DistillConfig, FinetuneConfig, MAEConfig
from tskd.student.losses import (
    DistillationLoss,
    SupervisedLoss,
    feature_kd_loss,
    logit_kd_loss,
)
from tskd.student.mae import MAETask, build_mae, transfer_mae_encoder
from tskd.student.networks import available_students, build_from_spec, build_student
from tskd.student.tasks import DistillationTask, FeatureDistillationTask, SupervisedTask
from tskd.student.validation import evaluate_dice

__all__ = [
    "StudentModel",
    "FeatureProjector",
    "StudentWithProjector",
    "count_parameters",
    "parameter_summary",
    "unwrap_student",
    "available_students",
    "build_student",
    "build_from_spec",
    "DistillConfig",
    "FinetuneConfig",
    "MAEConfig",
    "logit_kd_loss",
    "feature_kd_loss",
    "SupervisedLoss",
    "DistillationLoss",
    "DistillationTask",
    "SupervisedTask",
    "FeatureDistillationTask",
    "MAETask",
    "build_mae",
    "transfer_mae_encoder",
    "evaluate_dice",
]
