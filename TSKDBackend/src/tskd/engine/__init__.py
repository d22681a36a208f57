"""The training engine: one loop (on ``accelerate``) that every stage reuses."""

from tskd.engine.checkpoint import (
    load_checkpoint,
    load_trainable_state,
    save_checkpoint,
    trainable_state_dict,
)
from tskd.engine.config import EngineConfig
from tskd.engine.device import inference_device
from tskd.engine.sampling import DrawDataset, StepBatchSampler, draw_seed
from tskd.engine.stopping import StopFlag, stop_on_signals
from tskd.engine.trainer import Trainer, TrainingTask, TrainResult

__all__ = [
    "EngineConfig",
    "inference_device",
    "Trainer",
    "TrainingTask",
    "TrainResult",
    "StepBatchSampler",
    "DrawDataset",
    "draw_seed",
    "StopFlag",
    "stop_on_signals",
    "save_checkpoint",
    "load_checkpoint",
    "trainable_state_dict",
    "load_trainable_state",
]
