"""What a training stage keeps on disk, and reads back to resume: its checkpoints and metric log.

A stage folder holds::

    checkpoints/latest.pt   everything needed to resume: weights, optimiser, schedule, RNG, history
    checkpoints/final.pt    the weights when the stage finished (a finished stage is not run again)
    checkpoints/best.pt     the weights at the best validation value of ``best_metric``
    metrics.jsonl           one JSON record per logged training step and per validation

:class:`StageRecords` owns these files, the metric history and the best value so far; the loop
(:class:`~tskd.engine.trainer.Trainer`) tells it when to write. Every checkpoint carries the
run's fingerprint, and one made with other settings or data is refused rather than mixed.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from torch import nn

from tskd.atomic import write_text
from tskd.engine.checkpoint import (
    check_fingerprint,
    load_checkpoint,
    load_trainable_state,
    rng_state,
    save_checkpoint,
    trainable_state_dict,
)
from tskd.errors import CheckpointError

__all__ = ["StageRecords"]

logger = logging.getLogger(__name__)


class StageRecords:
    """The checkpoints, metric log, history and best value of one stage folder.

    Args:
        out_dir: the stage folder.
        fingerprint: JSON-able settings and data description stored in (and checked against) every
            checkpoint.
        best_metric: the validation metric whose best value ``best.pt`` keeps; ``min:<name>`` when
            lower is better.
        config: the loop's settings as a dict, stored in every checkpoint.
    """

    def __init__(self, out_dir: Path, fingerprint: dict[str, Any], best_metric: str, config: dict[str, Any]) -> None:
        self.out_dir = out_dir
        self.checkpoint_dir = out_dir / "checkpoints"
        self.fingerprint = fingerprint
        self.best_metric = best_metric
        self.config = config
        self.history: list[dict[str, Any]] = []
        self.best: tuple[float, int] | None = None

    @property
    def latest_path(self) -> Path:
        return self.checkpoint_dir / "latest.pt"

    @property
    def final_path(self) -> Path:
        return self.checkpoint_dir / "final.pt"

    @property
    def best_path(self) -> Path:
        return self.checkpoint_dir / "best.pt"

    # -- checkpoints ----------------------------------------------------------------------------
    def save(self, path: Path, step: int, model: nn.Module, optimizer: Any, scheduler: Any, accelerator: Any, *,
             full: bool) -> None:
        """Write a checkpoint (on the main process): the weights, history, best and fingerprint, and
        with ``full`` the optimiser, schedule and every process's RNG state (what resuming needs)."""
        from accelerate.utils import gather_object

        rng = gather_object([rng_state()]) if accelerator.num_processes > 1 else [rng_state()]
        if accelerator.is_main_process:
            payload: dict[str, Any] = {
                "step": step,
                "model": trainable_state_dict(accelerator.unwrap_model(model)),
                "history": self.history,
                "best": self.best,
                "fingerprint": self.fingerprint,
                "config": self.config,
                "num_processes": accelerator.num_processes,
            }
            if full:
                payload["optimizer"] = optimizer.state_dict()
                payload["scheduler"] = scheduler.state_dict()
                payload["rng"] = rng
            save_checkpoint(payload, path)
        accelerator.wait_for_everyone()

    def load_final(self, model: nn.Module) -> dict[str, Any] | None:
        """When the stage already finished: its final weights loaded into ``model``, its history
        and best restored, and the checkpoint's payload returned; else None."""
        if not self.final_path.is_file():
            return None
        payload = load_checkpoint(self.final_path)
        check_fingerprint(payload, self.fingerprint, self.final_path)
        load_trainable_state(model, payload["model"], source=str(self.final_path))
        self.history = payload.get("history", [])
        best = payload.get("best")
        self.best = tuple(best) if best else None
        return payload

    def load_latest(self, model: nn.Module, num_processes: int) -> dict[str, Any] | None:
        """When ``latest.pt`` exists: its weights loaded into ``model``, the history up to its step
        and the best restored, and its payload returned (for the optimiser, schedule and RNGs).

        Raises:
            CheckpointError: other settings or data (fingerprint), or another number of processes.
        """
        if not self.latest_path.is_file():
            return None
        payload = load_checkpoint(self.latest_path)
        check_fingerprint(payload, self.fingerprint, self.latest_path)
        if payload.get("num_processes", 1) != num_processes:
            raise CheckpointError(
                f"{self.latest_path}: saved by {payload.get('num_processes')} process(es); resume with the "
                f"same number of processes (now {num_processes})"
            )
        load_trainable_state(model, payload["model"], source=str(self.latest_path))
        step = int(payload["step"])
        self.history = [r for r in payload.get("history", []) if r.get("step", 0) <= step]
        self.best = tuple(payload["best"]) if payload.get("best") else None
        return payload

    def consider_best(self, step: int, metrics: dict[str, float], model: nn.Module) -> bool:
        """Keep ``model``'s weights in ``best.pt`` when ``metrics`` beat the best value so far."""
        name, higher = (self.best_metric[4:], False) if self.best_metric.startswith("min:") else (self.best_metric, True)
        value = metrics.get(name)
        if value is None or not math.isfinite(value):
            return False
        if self.best is not None and not (value > self.best[0] if higher else value < self.best[0]):
            return False
        self.best = (value, step)
        save_checkpoint({"step": step, "model": trainable_state_dict(model), "metrics": metrics,
                         "fingerprint": self.fingerprint}, self.best_path)
        return True

    # -- the metric log -------------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        """Add a record to the history and to ``metrics.jsonl``."""
        self.history.append(record)
        with (self.out_dir / "metrics.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def rewrite_log(self) -> None:
        """``metrics.jsonl`` as the history says (after a resume dropped the records past its step)."""
        write_text(self.out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))

    def latest_validation(self) -> dict[str, float]:
        """The metrics of the last validation record (empty before any)."""
        for record in reversed(self.history):
            if record.get("kind") == "validation":
                return {k: v for k, v in record.items() if k not in ("kind", "step")}
        return {}
