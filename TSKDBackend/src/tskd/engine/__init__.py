"""The training engine: one loop (on ``accelerate``) that every stage reuses."""

from tskd.engine.checkpoint import (
    load_checkpoint,
    load_trainable_state,
    save_checkpoint,
    trainable_state_dict,
)
from tskd.engine.config import EngineConfig
from tskd.engine.device import inference_device
from tskd.engine.distributed import (
    MainProcessError,
    ProcessInfo,
    barrier,
    broadcast_object,
    init_distributed,
    is_main_process,
    on_main,
    process_info,
)
from tskd.engine.sampling import DrawDataset, StepBatchSampler, draw_seed
from tskd.engine.stopping import StopFlag, stop_on_signals
from tskd.engine.trainer import Trainer, TrainingTask, TrainResult

__all__ = [
    "EngineConfig",
    "inference_device",
    "ProcessInfo",
    "MainProcessError",
    "process_info",
    "is_main_process",
    "init_distributed",
    "on_main",
    "broadcast_object",
    "barrier",
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
