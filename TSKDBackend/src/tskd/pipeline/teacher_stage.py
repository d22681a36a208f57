"""Teacher stage: fine-tune SAM / MedSAM on the task (LoRA), or train a small SAM from scratch
when no foundation weights are given, and save it to ``RUN/teacher/``.
"""

from __future__ import annotations

import dataclasses
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
from tskd.engine.device import training_device
from tskd.foundation.cache import embeddings_dir
from tskd.teacher.box_teacher import box_prompted_teacher
from tskd.runtime.box_model import BOX_MODEL_FOLDER
from tskd.teacher.box_tuning import BoxTuningTask
from tskd.teacher.build import attach_embedding_cache, build_teacher
from tskd.teacher.checkpoints import load_pretrained_segmenter
from tskd.teacher.lora import trainable_parameter_report
from tskd.teacher.model import SamSegmenter
from tskd.teacher.storage import TEACHER_JSON, load_teacher, save_teacher
from tskd.teacher.task import TeacherTask

__all__ = ["TeacherResult", "run_teacher_stage", "teacher_entry", "tune_box_model", "warm_start_teacher", "ResizedSlices",
           "PREPROCESSING_JSON", "embedding_cache_root"]

logger = logging.getLogger(__name__)


def teacher_entry(info: dict[str, Any]) -> dict[str, Any]:
    """What the package records about the teacher (from ``teacher.json``)."""
    base = info.get("base") or {}
    return {
        "architecture": info.get("architecture"),
        "base": Path(base["path"]).name if base.get("path") else None,
        "base_sha256": base.get("sha256"),
        "has_foundation_weights": bool(info.get("has_foundation_weights")),
        # how it was fine-tuned and how it labelled the transfer set (null for a teacher trained from scratch)
        "encoder": (("lora" if info.get("lora") else "frozen") if info.get("has_foundation_weights") else None),
        "teaching": (info.get("config") or {}).get("teaching", "prompt_free"),
    }


NO_FOUNDATION_WARNING = (
    "NO FOUNDATION WEIGHTS: this teacher is a small SAM-layout model trained from scratch on the task "
    "(base: none). For a real foundation-model teacher run 'tskd foundation get litemedsam' (39 MB, runs on a "
    "CPU; offline: 'tskd foundation import FILE') and give --base litemedsam (or --base auto, or a checkpoint path)."
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
    box_model: SamSegmenter | None = None  # the task-tuned box model (teacher.box_tuning), when tuned
    box_metrics: dict[str, float] | None = None

    @property
    def has_foundation_weights(self) -> bool:
        return bool(self.info.get("has_foundation_weights"))


def _training_sets(data: PreparedData, config: PipelineConfig, *, augment: bool = True,
                   size: int | None = None) -> tuple[Any, Any]:
    size = size if size is not None else config.teacher.model_input_size
    train = SliceDataset(data.prepared, data.train_labelled,
                         augment=build_augmentation(config.data.augment) if augment else None,
                         seed=config.teacher.train.seed)
    val = SliceDataset(data.prepared, data.val) if data.val.size else None
    if size != data.input_size:
        train = ResizedSlices(train, size)
        val = ResizedSlices(val, size) if val is not None else None
    return train, val


def embedding_cache_root(config: PipelineConfig) -> Path:
    """Where a frozen foundation encoder keeps its embeddings (``teacher.embedding_cache``)."""
    return embeddings_dir(config.teacher.embedding_cache)


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
    cache_root = embedding_cache_root(config)
    if config.teacher.teaching == "boxes" and not config.teacher.uses_foundation_weights:
        raise ConfigError("teacher.teaching 'boxes' needs foundation weights: give --base (e.g. litemedsam); a "
                          "teacher trained from scratch has no published decoder to prompt")
    if summary is not None:
        model = load_teacher(folder)
        attach_embedding_cache(model, cache_root)
        if not model.has_foundation_weights:
            logger.warning(NO_FOUNDATION_WARNING)
        result = TeacherResult(model, summary["teacher"], summary["trainable"], summary["metrics"])
        return _teaching(_box_tuning(result, run, data, config, context, cache_root), data, config, cache_root)

    if data.train_labelled.size == 0:
        raise ValueError("the teacher needs labelled training slices; the data stage produced none")
    torch.manual_seed(config.teacher.train.seed)  # the same initial weights on every (re)start
    on_cpu = training_device(config.teacher.train.device, config.teacher.train.mixed_precision)[0] == "cpu"
    model = build_teacher(config.teacher, data.num_classes, on_cpu=on_cpu, embedding_cache_root=cache_root)
    if start_from is not None:
        warm_start_teacher(model, start_from)
    report = trainable_parameter_report(model)
    if model.has_foundation_weights:
        how = f"LoRA rank {config.teacher.lora.rank}" if model.lora is not None else "a frozen encoder"
        logger.info(
            "teacher: %s from %s with %s: %s trainable parameters (%.3f%% of the image encoder)",
            model.architecture, model.base.path if model.base else config.teacher.base, how,
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

    frozen = model.has_foundation_weights and model.encoder_frozen
    if frozen:
        logger.info("teacher: the encoder is frozen, so its training slices are not augmented (each image is "
                    "encoded once and its embedding reused every epoch)")
    train, val = _training_sets(data, config, augment=not frozen)
    summary = fit_stage(
        folder=folder, stage="teacher", model=model,
        task=TeacherTask.from_config(config.teacher, num_classes=data.num_classes, val_data=val),
        dataset=train, train=config.teacher.stage_train, context=context,
        fingerprint={
            "teacher": config.teacher.to_dict(),
            **({"encoder": "lora" if model.lora is not None else "frozen"} if model.has_foundation_weights else {}),
            "prepared": data.prepared.fingerprint,
            "split": data.split,
            "augment": config.data.augment.to_dict(),
            **({"start_from": str(start_from)} if start_from is not None else {}),  # old runs still resume
        },
        save=save, summary=lambda: {"teacher": read_json(folder / TEACHER_JSON), "trainable": report},
    )
    result = TeacherResult(model, summary["teacher"], report, summary["metrics"])
    return _teaching(_box_tuning(result, run, data, config, context, cache_root), data, config, cache_root)


def _box_tuning(result: TeacherResult, run: RunFolder, data: PreparedData, config: PipelineConfig,
                context: StageContext, cache_root: Path) -> TeacherResult:
    """The run's task-tuned box model (``teacher.box_tuning``), in ``RUN/teacher/box_model/``, on the
    teacher's own foundation weights and input size. Skipped without foundation weights."""
    if not config.teacher.box_tuning.enabled or not result.has_foundation_weights or result.model.base is None:
        return result
    model, metrics = tune_box_model(run.teacher / BOX_MODEL_FOLDER, data, config, context, base=result.model.base.path,
                                    architecture=result.model.architecture, input_size=result.model.input_size,
                                    cache_root=cache_root)
    return dataclasses.replace(result, box_model=model, box_metrics=metrics)


def tune_box_model(folder: Path, data: PreparedData, config: PipelineConfig, context: StageContext, *,
                   base: str | Path, architecture: str, input_size: int,
                   cache_root: Path | None = None) -> tuple[SamSegmenter, dict[str, float]]:
    """The task-tuned box model (:mod:`tskd.teacher.box_tuning`): the published decoder of ``base``
    fine-tuned on boxes from ``data``'s labelled training slices (``config.teacher.box_tuning``), saved
    like a teacher in ``folder``; resumed or loaded when that stage already ran there.

    Returns:
        the model (eval mode, encoder frozen, ``cache_root``'s embeddings attached) and its validation
        metrics (``val_dice``: the validation boxes' masks).
    """
    tuning = config.teacher.box_tuning
    summary = stage_done(folder)
    if summary is not None:
        model = load_teacher(folder)
        attach_embedding_cache(model, cache_root)
        return model.eval(), summary["metrics"]
    torch.manual_seed(tuning.train.seed)
    model = load_pretrained_segmenter(str(base), architecture=architecture, input_size=input_size,
                                      num_classes=data.num_classes)
    model.freeze_encoder()
    attach_embedding_cache(model, cache_root)
    train, val = _training_sets(data, config, augment=False, size=input_size)
    logger.info("teacher: tuning the box decoder of %s on boxes from the %d labelled training slices (boxes moved by "
                "up to %.0f%% of their size)", model.architecture, len(train), 100 * tuning.jitter)
    summary = fit_stage(
        folder=folder, stage="box decoder", model=model,
        task=BoxTuningTask(num_classes=data.num_classes, val_data=val, jitter=tuning.jitter, seed=tuning.train.seed,
                           dice_weight=config.teacher.dice_weight, ce_weight=config.teacher.ce_weight,
                           val_batch_size=tuning.train.micro_batch_size),
        dataset=train, train=tuning.train, context=context,
        fingerprint={"box_tuning": tuning.to_dict(), "base_sha256": model.base.sha256 if model.base else None,
                     "input_size": input_size, "prepared": data.prepared.fingerprint, "split": data.split},
        save=lambda trained: save_teacher(trained, folder, config.teacher, label_names=data.labels.names),
        summary=lambda: {"box_model": read_json(folder / TEACHER_JSON)},
    )
    logger.info("teacher: task-tuned box model: validation Dice of boxes %.4f", summary["metrics"].get("val_dice", float("nan")))
    return model.eval(), summary["metrics"]


def _teaching(result: TeacherResult, data: PreparedData, config: PipelineConfig, cache_root: Path) -> TeacherResult:
    """The model that labels the transfer set: the fine-tuned teacher itself, or (``teaching: boxes``)
    the box-prompted teacher built on it, with its validation Dice beside the prompt-free one's."""
    if config.teacher.teaching != "boxes":
        return result
    boxes = box_prompted_teacher(result.model, embedding_cache_root=cache_root, prompter=result.box_model)
    _, val = _training_sets(data, config, augment=False)
    metrics = dict(result.metrics)
    if val is not None:
        task = TeacherTask.from_config(config.teacher, num_classes=data.num_classes, val_data=val)
        scores = task.validate(boxes)
        metrics.update({f"boxes_{k}": v for k, v in scores.items()})
        logger.info("teacher: box-prompted validation Dice %.4f (prompt-free %.4f)", scores.get("val_dice", float("nan")),
                    result.metrics.get("val_dice", float("nan")))
    return dataclasses.replace(result, model=boxes, metrics=metrics)
