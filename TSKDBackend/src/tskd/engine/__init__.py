"""The training engine: one loop (on ``accelerate``) that every stage reuses."""

from __future__ import annotations

from tskd.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), {
    "checkpoint": ["load_checkpoint", "load_trainable_state", "save_checkpoint", "trainable_state_dict"],
    "config": ["EngineConfig"],
    "device": ["inference_device"],
    "optim": ["build_optimizer", "default_param_groups"],
    "records": ["StageRecords"],
    "distributed": [
        "MainProcessError", "ProcessInfo", "barrier", "broadcast_object", "init_distributed", "is_main_process",
        "on_main", "process_info",
    ],
    "sampling": ["DrawDataset", "StepBatchSampler", "draw_seed"],
    "stopping": ["StopFlag", "stop_on_signals"],
    "task": ["TrainingTask", "finds_unused_parameters"],
    "trainer": ["Trainer", "TrainResult"],
    "validation": ["ValData", "as_loader", "device_of", "evaluate_batches", "mean_over_loader", "move_to"],
})
