"""Teacher stage: fine-tune SAM / MedSAM on the task (LoRA), or train a small SAM from scratch
when no foundation weights are given, and save it to ``RUN/teacher/``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tskd.atomic import write_json
from tskd.data.augment import build_augmentation
from tskd.data.slice_dataset import SliceDataset
from tskd.errors import ConfigError
from tskd.inference.teacher_model import PREPROCESSING_JSON
from tskd.runconfig import PipelineConfig
from tskd.pipeline.data_stage import PreparedData
from tskd.pipeline.run_folder import RunFolder, read_json
from tskd.pipeline.stage import StageContext, fit_stage, stage_done
from tskd.teacher.build import build_teacher
from tskd.teacher.lora import trainable_parameter_report
from tskd.teacher.model import SamSegmenter
from tskd.teacher.storage import TEACHER_JSON, load_teacher, save_teacher
from tskd.teacher.task import TeacherTask

__all__ = ["TeacherResult", "run_teacher_stage", "warm_start_teacher", "ResizedSlices", "PREPROCESSING_JSON"]

logger = logging.getLogger(__name__)


NO_FOUNDATION_WARNING = (
    "NO FOUNDATION WEIGHTS: this teacher is a small SAM-layout model trained from scratch on the task "
    "(base: none). For a real foundation-model teacher run 'tskd foundation get medsam-vit-b' (offline: "
    "'tskd foundation import FILE') and give --base medsam-vit-b (or --base auto, or a checkpoint path)."
)


class ResizedSlices(torch.utils.data.Dataset):
    """Serves prepared slices at another square size (image bilinear, label nearest)."""

    def __init__(self, dataset: SliceDataset, size: int) -> None:
        self.dataset = dataset
        self.size = size

    def __len__(self) -> int:
        return len(self.dataset)

    def _resize(self, item: dict[str, Any]) -> dict[str, Any]:
        if item["image"].shape[-1] == self.size:
            return item
        item = dict(item)
        item["image"] = F.interpolate(item["image"][None], size=(self.size, self.size), mode="bilinear",
                                      align_corners=False)[0]
        item["label"] = F.interpolate(item["label"][None, None].float(), size=(self.size, self.size),
                                      mode="nearest")[0, 0].long()
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._resize(self.dataset[index])

    def sample(self, index: int, seed: int) -> dict[str, Any]:
        return self._resize(self.dataset.sample(index, seed))


@dataclass
class TeacherResult:
    """The trained teacher and what is known about its training."""

    model: SamSegmenter
    info: dict[str, Any]
    trainable: dict[str, Any]
    metrics: dict[str, float]

    @property
    def has_foundation_weights(self) -> bool:
        return bool(self.info.get("has_foundation_weights"))


def _training_sets(data: PreparedData, config: PipelineConfig) -> tuple[Any, Any]:
    size = config.teacher.input_size
    train = SliceDataset(data.prepared, data.train_labelled, augment=build_augmentation(config.data.augment),
                         seed=config.teacher.train.seed)
    val = SliceDataset(data.prepared, data.val) if data.val.size else None
    if size != data.input_size:
        train = ResizedSlices(train, size)
        val = ResizedSlices(val, size) if val is not None else None
    return train, val


def warm_start_teacher(model: SamSegmenter, folder: Path) -> None:
    """Give ``model`` (just built from the same teacher config) the weights of the fine-tuned teacher
    saved in ``folder``.

    Raises:
        ConfigError: the saved teacher has another architecture, input size, class count or LoRA
            layout than ``model``.
    """
    previous = load_teacher(folder)
    own = model.state_dict()
    theirs = previous.state_dict()
    wrong = sorted(k for k in set(own) | set(theirs)
                   if k not in own or k not in theirs or tuple(own[k].shape) != tuple(theirs[k].shape))
    if wrong:
        raise ConfigError(
            f"{folder}: the previous teacher does not fit this run's teacher ({len(wrong)} tensors differ, first: "
            f"{', '.join(wrong[:3])}); an update needs the same teacher settings, or train from scratch"
        )
    model.load_state_dict(theirs)
    logger.info("teacher: starting from the fine-tuned teacher in %s", folder)


def run_teacher_stage(
    run: RunFolder,
    data: PreparedData,
    config: PipelineConfig,
    context: StageContext,
    *,
    start_from: Path | None = None,
) -> TeacherResult:
    """Train the teacher (or load it when this stage already finished in ``run``).

    Args:
        start_from: a previous run's ``teacher/`` folder (an update): the teacher is built as
            usual, then given that fine-tuned teacher's weights (LoRA adapters and heads; the
            frozen base is the same file) before training continues on this run's data.
    """
    folder = run.teacher
    summary = stage_done(folder)
    if summary is not None:
        model = load_teacher(folder)
        if not model.has_foundation_weights:
            logger.warning(NO_FOUNDATION_WARNING)
        return TeacherResult(model, summary["teacher"], summary["trainable"], summary["metrics"])

    if data.train_labelled.size == 0:
        raise ValueError("the teacher needs labelled training slices; the data stage produced none")
    torch.manual_seed(config.teacher.train.seed)  # the same initial weights on every (re)start
    model = build_teacher(config.teacher, data.num_classes)
    if start_from is not None:
        warm_start_teacher(model, start_from)
    report = trainable_parameter_report(model)
    if model.has_foundation_weights:
        logger.info(
            "teacher: %s from %s with LoRA rank %d: %s trainable parameters (%.3f%% of the image encoder)",
            model.architecture, model.base.path if model.base else config.teacher.base, config.teacher.lora.rank,
            f"{report['trainable']:,}", report["encoder_trainable_percent"],
        )
    else:
        logger.warning(NO_FOUNDATION_WARNING)
        logger.info("teacher: %s, %s trainable parameters", model.architecture, f"{report['trainable']:,}")

    def save(trained: SamSegmenter) -> None:
        save_teacher(trained, folder, config.teacher, label_names=data.labels.names)
        write_json(folder / PREPROCESSING_JSON, {
            "labels": data.labels.to_dict(),
            "normalization": data.normalization.to_dict(),
            "slice_axis": data.slice_axis,
        })

    train, val = _training_sets(data, config)
    summary = fit_stage(
        folder=folder, stage="teacher", model=model,
        task=TeacherTask.from_config(config.teacher, num_classes=data.num_classes, val_data=val),
        dataset=train, train=config.teacher.train, context=context,
        fingerprint={
            "teacher": config.teacher.to_dict(),
            "prepared": data.prepared.fingerprint,
            "split": data.split,
            "augment": config.data.augment.to_dict(),
            **({"start_from": str(start_from)} if start_from is not None else {}),  # old runs still resume
        },
        save=save, summary=lambda: {"teacher": read_json(folder / TEACHER_JSON), "trainable": report},
    )
    return TeacherResult(model, summary["teacher"], report, summary["metrics"])
