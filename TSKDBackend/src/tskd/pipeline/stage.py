"""The one stage helper: every training stage of a run (teacher, synthesis, MAE, distillation,
fine-tuning, the supervised reference, the comparison's extra students) goes through here.

A stage folder holds the engine's checkpoints, the stage's artifact and ``stage.json``, written
last: its presence means the stage finished (:func:`stage_done`), and a restarted run skips it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from torch import nn

from tskd.atomic import write_json
from tskd.engine import EngineConfig, StopFlag, Trainer, load_checkpoint, load_trainable_state, on_main
from tskd.pipeline.run_folder import read_json
from tskd.progress import ProgressReporter
from tskd.student.base import count_parameters
from tskd.student.storage import save_student

__all__ = ["StageContext", "fit_stage", "stage_done"]

logger = logging.getLogger(__name__)


class StageContext:
    """Progress display, stop flag and stage position shared by the stages of one run."""

    def __init__(self, progress: ProgressReporter | None = None, stop_flag: StopFlag | None = None,
                 stage_index: int = 1, stage_count: int = 1) -> None:
        self.progress = progress
        self.stop_flag = stop_flag
        self.stage_index = stage_index
        self.stage_count = stage_count

    def at(self, stage_index: int, stage_count: int) -> StageContext:
        """The same display and stop flag at another position in the run."""
        return StageContext(self.progress, self.stop_flag, stage_index, stage_count)


def stage_done(folder: Path) -> dict[str, Any] | None:
    """The finished stage's ``stage.json``, or None when the stage in ``folder`` has not finished."""
    return read_json(folder / "stage.json") if (folder / "stage.json").is_file() else None


def fit_stage(
    *,
    folder: Path,
    stage: str,
    model: nn.Module,
    task: Any,
    dataset: Any,
    train: EngineConfig,
    fingerprint: dict[str, Any],
    context: StageContext,
    save: Callable[[nn.Module], None] | None = None,
    summary: Callable[[], dict[str, Any]] | None = None,
    keep_best: bool = True,
) -> dict[str, Any]:
    """Train ``model`` with the engine in ``folder``, keep its best validation weights, save it.

    Args:
        save: writes the stage's artifact (default: ``student.pt`` via :func:`save_student`).
        summary: the stage's own ``stage.json`` entries, called after ``save`` (default: the stage
            name and the model's parameter count); the metrics, steps and seconds are added.
        keep_best: load the best validation checkpoint before saving (the synthesis stage keeps its
            last weights: its validation loss is too noisy to choose by).

    Returns:
        ``stage.json`` as the main process wrote it (validation runs there). On every rank the
        function returns only when the files exist.
    """
    trainer = Trainer(
        model=model, task=task, train_dataset=dataset, config=train, out_dir=folder, stage=stage,
        progress=context.progress, stop_flag=context.stop_flag, stage_index=context.stage_index,
        stage_count=context.stage_count, fingerprint=fingerprint,
    )
    result = trainer.fit()
    metrics = result.final_metrics
    if keep_best and trainer.best_path.is_file():
        best = load_checkpoint(trainer.best_path)
        load_trainable_state(model, best["model"], source=str(trainer.best_path))
        metrics = best.get("metrics", metrics)
        logger.info("%s: keeping the best validation checkpoint (step %d): %s", stage, best["step"],
                    {k: round(v, 4) for k, v in metrics.items()})
    model.eval()

    def write() -> None:  # once, by the main process
        if save is not None:
            save(model)
        else:
            save_student(model, folder / "student.pt", stage=stage, metrics=metrics)
        own = summary() if summary is not None else {"stage": stage, "parameters": count_parameters(model)}
        write_json(folder / "stage.json", {**own, "metrics": metrics, "steps": result.steps,
                                           "seconds": round(result.seconds, 1)})

    on_main(write)
    return read_json(folder / "stage.json")
