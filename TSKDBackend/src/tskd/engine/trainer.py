"""The one training loop of the project, on top of Hugging Face ``accelerate``.

Stages (teacher fine-tuning, diffusion training, student distillation and fine-tuning) give the
:class:`Trainer` a built model, a dataset and a :class:`TrainingTask` (the stage-specific loss and
validation); the trainer owns devices, distribution, mixed precision, gradient accumulation, the
optimiser and schedule, checkpoints, resume, metric logs and progress events.

The same code runs on a CPU, one GPU, or many processes under ``torchrun`` / ``accelerate launch``:
the global batch is split across processes, gradients are averaged, metrics are reduced, and
checkpoints are written once by the main process.

Resuming: the trainer writes ``checkpoints/latest.pt`` every ``checkpoint_every`` steps and when
stopped by a signal or a cancel file. Started again on the same folder with the same settings, it
continues from that step and ends with the same weights as an uninterrupted run (data order and
augmentation are functions of the draw number; RNG, optimiser and schedule state are restored).

Where the parts are: this module is the loop (start, train step, step end: log, validate,
checkpoint, progress; end); what a stage keeps on disk and reads back is
:mod:`tskd.engine.records`, the optimiser and schedule :mod:`tskd.engine.optim`, the batches
:mod:`tskd.engine.sampling`, devices :mod:`tskd.engine.device`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from tskd.engine.checkpoint import set_rng_state
from tskd.engine.config import EngineConfig
from tskd.engine.device import training_device
from tskd.engine.distributed import agree
from tskd.engine.optim import build_optimizer
from tskd.engine.records import StageRecords
from tskd.engine.sampling import DrawDataset, StepBatchSampler
from tskd.engine.stopping import StopFlag
from tskd.engine.task import TrainingTask, finds_unused_parameters
from tskd.errors import CancelledError, ConfigError
from tskd.progress import NullProgress, ProgressEvent, ProgressReporter

__all__ = ["TrainingTask", "Trainer", "TrainResult"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished (or already finished) stage reports."""

    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    final_metrics: dict[str, float] = field(default_factory=dict)
    best_metric: float | None = None
    best_step: int | None = None
    checkpoint_dir: Path | None = None
    resumed_from: int | None = None
    seconds: float = 0.0


@dataclass
class _Run:
    """The state of one ``fit`` call that its phases share: the prepared objects and the loop's counters."""

    accelerator: Any
    model: nn.Module  # as prepared by the accelerator (DDP-wrapped under several processes)
    optimizer: Any
    scheduler: Any
    start_step: int  # the step resumed from (0: a fresh start)
    start_time: float
    step: int  # optimiser steps done
    running: dict[str, float] = field(default_factory=dict)  # logs summed over the step's micro-batches
    running_count: int = 0


class Trainer:
    """Runs one training stage to ``config.max_steps`` with checkpoints and resume.

    Args:
        model: the built model; parameters with ``requires_grad`` are trained.
        task: loss and validation of the stage (see :class:`TrainingTask`).
        train_dataset: a map-style dataset; items are collated by the default collate function.
            A dataset with ``sample(index, seed)`` receives a per-draw seed for augmentation.
        config: loop settings.
        out_dir: the stage folder; checkpoints go to ``out_dir/checkpoints``, metric logs to
            ``out_dir/metrics.jsonl``.
        stage: name used in progress events and logs.
        progress: receives progress events (on the main process only; other ranks emit none).
        fingerprint: JSON-able description of the settings and data; a checkpoint made with a
            different fingerprint is refused rather than silently mixed.
        param_groups: optional optimiser parameter groups (default: AdamW, no decay on 1-D params).
        stop_flag: checked after every step; when set, a checkpoint is saved and
            :class:`~tskd.errors.CancelledError` raised.
        train_indices: optional subset of dataset indices to draw from.
        stage_index, stage_count: position of the stage in a pipeline, for progress display.
        on_step: optional callback ``(step, logs)`` after every optimiser step (main process).
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        task: TrainingTask,
        train_dataset: Any,
        config: EngineConfig,
        out_dir: str | Path,
        stage: str = "train",
        progress: ProgressReporter | None = None,
        fingerprint: dict[str, Any] | None = None,
        param_groups: list[dict[str, Any]] | None = None,
        stop_flag: StopFlag | None = None,
        train_indices: Iterable[int] | None = None,
        stage_index: int = 1,
        stage_count: int = 1,
        on_step: Callable[[int, dict[str, float]], None] | None = None,
    ) -> None:
        self.model = model
        self.task = task
        self.train_dataset = train_dataset
        self.config = config
        self.out_dir = Path(out_dir)
        self.stage = stage
        self.progress = progress or NullProgress()
        self.fingerprint = json.loads(json.dumps(fingerprint or {}, default=str))
        self.param_groups = param_groups
        self.stop_flag = stop_flag or StopFlag()
        self.train_indices = list(train_indices) if train_indices is not None else None
        self.stage_index = stage_index
        self.stage_count = stage_count
        self.on_step = on_step
        self.records = StageRecords(self.out_dir, self.fingerprint, config.best_metric, config.to_dict())

    @property
    def history(self) -> list[dict[str, Any]]:
        """The metric records so far (``metrics.jsonl``)."""
        return self.records.history

    @property
    def best(self) -> tuple[float, int] | None:
        """``(value, step)`` of the best validation so far."""
        return self.records.best

    # ------------------------------------------------------------------ set-up
    def _accelerator(self):
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

        cfg = self.config
        device, precision = training_device(cfg.device, cfg.mixed_precision)
        # the device and precision as fields too, for tools that check them (benchmarks/gpu_check.py)
        logger.info("%s: training on %s, mixed precision %s", self.stage, device, precision,
                    extra={"tskd_stage": self.stage, "tskd_device": device, "tskd_mixed_precision": precision})
        return Accelerator(
            cpu=device == "cpu",
            mixed_precision=precision,
            gradient_accumulation_steps=cfg.grad_accum_steps,
            dataloader_config=DataLoaderConfiguration(split_batches=True),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=finds_unused_parameters(self.task))],
            step_scheduler_with_optimizer=False,
        )

    # ------------------------------------------------------------------ checkpoints (see records.py)
    @property
    def checkpoint_dir(self) -> Path:
        return self.records.checkpoint_dir

    @property
    def latest_path(self) -> Path:
        return self.records.latest_path

    @property
    def final_path(self) -> Path:
        return self.records.final_path

    @property
    def best_path(self) -> Path:
        return self.records.best_path

    def _emit(self, step: int, metrics: dict[str, float], message: str = "", state: str = "running") -> None:
        self.progress(
            ProgressEvent(
                stage=self.stage,
                step=step,
                total=self.config.max_steps,
                metrics=metrics,
                message=message,
                state=state,
                stage_index=self.stage_index,
                stage_count=self.stage_count,
            )
        )

    def load_final(self) -> TrainResult | None:
        """If the stage already finished, load its final weights into the model and report it."""
        payload = self.records.load_final(self.model)
        if payload is None:
            return None
        logger.info("%s: already finished (%s); loaded its final weights", self.stage, self.final_path)
        return TrainResult(
            steps=payload["step"],
            history=self.history,
            final_metrics=self.records.latest_validation(),
            best_metric=self.best[0] if self.best else None,
            best_step=self.best[1] if self.best else None,
            checkpoint_dir=self.records.checkpoint_dir,
        )

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainResult:
        """Train to ``max_steps`` (resuming if possible) and return the result."""
        done = self.load_final()
        if done is not None:
            return done
        start_time = time.monotonic()
        accelerator = self._on_train_start()
        payload = self._resume(accelerator)
        run = self._build_run(accelerator, payload, start_time)
        loader = self._build_loader(accelerator, run.start_step)
        run.model.train()
        for batch in loader:
            logs = self._train_step(run, batch)
            if logs is not None:  # an optimiser step is complete (not only a micro-batch)
                self._on_step_end(run, logs)
        return self._on_train_end(run)

    def _on_train_start(self):
        """The accelerator, the checks that need it, and the stage folder."""
        cfg = self.config
        accelerator = self._accelerator()
        if cfg.micro_batch_size % accelerator.num_processes:
            raise ConfigError(
                f"the micro-batch ({cfg.batch_size} / {cfg.grad_accum_steps} accumulation steps = "
                f"{cfg.micro_batch_size}) must be divisible by the number of processes ({accelerator.num_processes})"
            )
        if accelerator.num_processes > 1 and finds_unused_parameters(self.task):
            logger.info("%s: DDP looks for parameters without gradient at every step (the task declares some)",
                        self.stage)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not accelerator.is_main_process:
            self.progress = NullProgress()  # progress events come from the main process only
        return accelerator

    def _resume(self, accelerator) -> dict[str, Any] | None:
        """Load ``latest.pt`` into the model and the records when there is one (its payload is
        returned for the optimiser, schedule and RNG state); seed everything when starting afresh."""
        cfg = self.config
        payload = self.records.load_latest(self.model, accelerator.num_processes)
        if payload is None:
            torch.manual_seed(cfg.seed)
            np.random.seed(cfg.seed % 2**32)
            random.seed(cfg.seed)
            self.records.history = []
        if accelerator.is_main_process:
            self.records.rewrite_log()
        return payload

    def _build_run(self, accelerator, payload: dict[str, Any] | None, start_time: float) -> _Run:
        """Optimiser and schedule, prepared with the model; their state and the RNGs restored on resume."""
        optimizer, scheduler = build_optimizer(self.model, self.config, self.param_groups)
        model, optimizer = accelerator.prepare(self.model, optimizer)
        start_step = 0
        if payload is not None:
            start_step = int(payload["step"])
            optimizer.load_state_dict(payload["optimizer"])
            scheduler.load_state_dict(payload["scheduler"])
            set_rng_state(payload["rng"][accelerator.process_index])
            logger.info("%s: resuming from step %d (%s)", self.stage, start_step, self.latest_path)
            self._emit(start_step, {}, message=f"resumed from step {start_step}")
        return _Run(accelerator=accelerator, model=model, optimizer=optimizer, scheduler=scheduler,
                    start_step=start_step, start_time=start_time, step=start_step)

    def _build_loader(self, accelerator, start_step: int):
        """The batches of steps ``start_step + 1 .. max_steps``, split across processes."""
        cfg = self.config
        sampler = StepBatchSampler(
            dataset_size=len(self.train_dataset),
            batch_size=cfg.batch_size,
            grad_accum_steps=cfg.grad_accum_steps,
            max_steps=cfg.max_steps,
            start_step=start_step,
            seed=cfg.seed,
            indices=self.train_indices,
        )
        loader = DataLoader(
            DrawDataset(self.train_dataset),
            batch_sampler=sampler,
            num_workers=cfg.num_workers,
            persistent_workers=cfg.num_workers > 0,
            # its own generator: creating an iterator must not draw from the global RNG, or a
            # resumed run's dropout would be shifted by one draw
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        return accelerator.prepare(loader)

    def _train_step(self, run: _Run, batch: Any) -> dict[str, float] | None:
        """Forward and backward of one micro-batch; at the end of an accumulation, the optimiser and
        schedule step. Returns the step's logs averaged over its micro-batches (with ``lr``) when an
        optimiser step is complete, None after a micro-batch inside an accumulation."""
        accelerator, model, cfg = run.accelerator, run.model, self.config
        with accelerator.accumulate(model):
            loss, logs = self.task.training_step(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"{self.stage}: the loss became {loss.item()} at step {run.step}; lower the learning rate"
                )
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.clip_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        logs = {"loss": float(accelerator.reduce(loss.detach(), "mean")), **logs}
        for key, value in logs.items():
            run.running[key] = run.running.get(key, 0.0) + float(value)
        run.running_count += 1
        if not accelerator.sync_gradients:
            return None
        run.scheduler.step()
        run.step += 1
        averaged = {k: v / run.running_count for k, v in run.running.items()}
        averaged["lr"] = run.scheduler.get_last_lr()[0]
        run.running, run.running_count = {}, 0
        return averaged

    def _on_step_end(self, run: _Run, logs: dict[str, float]) -> None:
        """After an optimiser step: metric log and ``on_step``, validation, stop agreement, checkpoint,
        progress; raises :class:`~tskd.errors.CancelledError` (after the checkpoint) when asked to stop."""
        accelerator, step, cfg = run.accelerator, run.step, self.config
        last = step == cfg.max_steps
        if accelerator.is_main_process:
            if step % cfg.log_every == 0 or last:
                self.records.log({"kind": "train", "step": step, **logs})
            if self.on_step is not None:
                self.on_step(step, logs)
        if step % cfg.validate_every == 0 or last:
            self._validate(step, run.model, accelerator)
        stopping = self.stop_flag.is_set()
        if accelerator.num_processes > 1:
            # every rank must stop at the same step (a signal or cancel file reaches them at different times)
            stopping = agree(stopping)
            if stopping and not self.stop_flag.is_set():
                self.stop_flag.set("another process was asked to stop")
        if step % cfg.checkpoint_every == 0 or last or stopping:
            self.records.save(self.latest_path, step, run.model, run.optimizer, run.scheduler, accelerator, full=True)
        if accelerator.is_main_process:
            shown = {k: logs[k] for k in ("loss",) if k in logs}
            shown.update(self.records.latest_validation())
            self._emit(step, shown)
        if stopping and not last:
            self._emit(step, {}, message=f"stopped ({self.stop_flag.reason}); checkpoint saved", state="cancelled")
            raise CancelledError(
                f"{self.stage} stopped at step {step} of {cfg.max_steps} ({self.stop_flag.reason}); "
                "run the same command again to resume"
            )

    def _on_train_end(self, run: _Run) -> TrainResult:
        """``final.pt``, the unwrapped model back in ``self.model``, the last progress event, the result."""
        accelerator, step = run.accelerator, run.step
        self.records.save(self.final_path, step, run.model, run.optimizer, run.scheduler, accelerator, full=False)
        self.model = accelerator.unwrap_model(run.model)
        if accelerator.device.type != "cpu":
            # the device's cache back for the next stage (and a full gc.collect() first). On the CPU there is
            # no device cache, and that full collection cost 0.3-1 s per stage with torch, MONAI and
            # matplotlib loaded (2026-12-06, cpu-2c), for nothing: this accelerator is dropped with the run.
            accelerator.free_memory()
        seconds = time.monotonic() - run.start_time
        final = self.records.latest_validation()
        self._emit(step, final, message="finished", state="done")
        return TrainResult(
            steps=step,
            history=self.history,
            final_metrics=final,
            best_metric=self.best[0] if self.best else None,
            best_step=self.best[1] if self.best else None,
            checkpoint_dir=self.records.checkpoint_dir,
            resumed_from=run.start_step or None,
            seconds=seconds,
        )

    def _validate(self, step: int, model, accelerator) -> None:
        # Every rank validates, on the same data, so a task's validation may use collectives (MONAI's
        # cumulative metrics all-gather their buffers when a process group exists; a validation on
        # rank 0 alone would then wait forever; the project's own tskd.metrics uses none). Only the
        # main process records.
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in (self.task.validate(unwrapped) or {}).items()}
        unwrapped.train()
        if accelerator.is_main_process and metrics:
            self.records.log({"kind": "validation", "step": step, **metrics})
            self.records.consider_best(step, metrics, unwrapped)
        accelerator.wait_for_everyone()
