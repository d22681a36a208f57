"""The students of TS-KD: networks, distillation losses, training tasks and MAE pre-training.

Build a student by name with :func:`build_student`; hand a task (:class:`DistillationTask`,
:class:`SupervisedTask`, :class:`FeatureDistillationTask`, :class:`MAETask`) and the model to the
engine's training loop.
"""

from __future__ import annotations

from tskd.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), {
    "base": [
        "FeatureProjector", "StudentModel", "StudentWithProjector", "count_parameters", "parameter_summary",
        "unwrap_student",
    ],
    "config": ["DistillConfig", "FinetuneConfig", "MAEConfig"],
    "losses": ["DistillationLoss", "SupervisedLoss", "feature_kd_loss", "logit_kd_loss"],
    "mae": ["MAETask", "build_mae", "transfer_mae_encoder"],
    "networks": ["available_students", "build_from_spec", "build_student"],
    "tasks": ["DistillationTask", "FeatureDistillationTask", "SupervisedTask"],
    "validation": ["evaluate_dice"],
})
