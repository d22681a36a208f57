"""Baseline: task-agnostic knowledge distillation (MobileSAM-style), then fine-tuning.

The student's encoder (with a 1x1 projector) learns to reproduce the image embeddings of the
foundation model *as it is*, frozen and not fine-tuned on the task (feature MSE only, no labels,
no teacher logits), on the real training images of the task (labelled and unlabelled: the real
part of the transfer set). The student is then fine-tuned on the labelled cases like TS-KD's.

Without foundation weights (``--base none``) the frozen model is a randomly initialised SAM-layout
model of the teacher's architecture and input size (the teacher's own starting weights): the
baseline then distils random features, and its table row says so.

Budget: feature distillation gets the distillation stage's settings (``distill.train``; the best
checkpoint is the one with the lowest validation feature MSE), the fine-tuning TS-KD's
(``finetune.train``).

Cost: with foundation weights the frozen encoder's embeddings go through the embedding cache
(``teacher.embedding_cache``, the same one the teacher stage fills), and the feature-distillation
images are not augmented, so each image's embedding is computed once (as MobileSAM precomputed
its teacher's embeddings) and the stage costs student steps only. Without foundation weights
(a random encoder, cheap only in name) the images are augmented as before.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tskd.data.augment import build_augmentation
from tskd.data.slice_dataset import SliceDataset
from tskd.engine.validation import device_of
from tskd.runconfig import PipelineConfig
from tskd.pipeline.data_stage import PreparedData
from tskd.pipeline.comparison.methods.base import Method, export_student, with_changes
from tskd.pipeline.run_folder import RunFolder, read_json
from tskd.pipeline.stage import StageContext, fit_stage
from tskd.pipeline.teacher_stage import embedding_cache_root
from tskd.pipeline.student_stage import TeacherEmbeddings, new_student, run_finetune_stage
from tskd.student.base import FeatureProjector, StudentWithProjector, unwrap_student
from tskd.student.storage import load_student
from tskd.student.tasks import FeatureDistillationTask
from tskd.teacher.build import attach_embedding_cache, build_scratch_segmenter
from tskd.teacher.checkpoints import load_pretrained_segmenter
from tskd.teacher.model import SamSegmenter

__all__ = ["TASK_AGNOSTIC_KD", "frozen_foundation_model", "EmbeddedBatches"]

logger = logging.getLogger(__name__)


def frozen_foundation_model(config: PipelineConfig, num_classes: int) -> SamSegmenter:
    """The foundation model before any task training (``teacher.base``), its encoder frozen and
    reading the embedding cache, or, with base ``none``, the randomly initialised SAM-layout model
    the teacher stage starts from (same seed)."""
    teacher = config.teacher
    if teacher.uses_foundation_weights:
        model = load_pretrained_segmenter(teacher.base, architecture=teacher.architecture,
                                          input_size=teacher.model_input_size, num_classes=num_classes)
        model.freeze_encoder()
        attach_embedding_cache(model, embedding_cache_root(config))
    else:
        logger.warning("task_agnostic_kd: no foundation weights (base: none); distilling the features of a "
                       "randomly initialised SAM '%s'", teacher.resolved_architecture())
        torch.manual_seed(teacher.train.seed)
        model = build_scratch_segmenter(teacher.resolved_architecture(), input_size=teacher.model_input_size,
                                        num_classes=num_classes)
    return model.eval()


class EmbeddedBatches:
    """Validation batches carrying the frozen model's embeddings; iterable any number of times.

    Args:
        dataset: validation slices (items with ``image`` ``(1, S, S)``).
        embeddings: the wrapper that computes ``teacher_embedding`` for a batch of images.
        batch_size: slices per batch.
    """

    def __init__(self, dataset: Dataset, embeddings: TeacherEmbeddings, batch_size: int = 8) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.embeddings = embeddings
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        device = device_of(self.embeddings.teacher)
        for batch in DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False, num_workers=0):
            batch = dict(batch)
            batch["teacher_embedding"] = self.embeddings.embed(batch["image"].to(device))
            yield batch


def _teacher_info(model: SamSegmenter) -> dict[str, Any]:
    return {
        "architecture": model.architecture,
        "base": model.base.to_dict() if model.base is not None else None,
        "has_foundation_weights": model.has_foundation_weights,
        "frozen": True,
    }


def _configure(config: PipelineConfig) -> tuple[PipelineConfig, str]:
    # the best feature-distillation checkpoint is the one closest to the frozen model on validation images
    config = with_changes(config, {"distill": {"train": {"best_metric": f"min:{FeatureDistillationTask.best_metric}"}}},
                          why="task_agnostic_kd")
    if config.teacher.uses_foundation_weights:
        return config, "features of the frozen foundation model"
    return config, (f"NO foundation weights: features of a randomly initialised SAM-layout "
                    f"'{config.teacher.resolved_architecture()}' encoder")


def _stages(run: RunFolder, data: PreparedData, config: PipelineConfig, context: StageContext,
            summary: dict[str, Any]) -> None:
    frozen = frozen_foundation_model(config, data.num_classes)
    folder = run.distill
    if (folder / "stage.json").is_file():
        student = load_student(folder / "student.pt")
    else:
        student = new_student(config, data)
        model = StudentWithProjector(student=student,
                                     projector=FeatureProjector(student.feature_channels, frozen.embedding_dim))
        inner = FeatureDistillationTask()
        task = TeacherEmbeddings(inner, frozen)
        if data.val.size:
            inner.val_data = EmbeddedBatches(SliceDataset(data.prepared, data.val, stacked=True), task)
        images = np.concatenate([data.train_labelled, data.train_unlabelled])  # labels are not used
        cached = frozen.embedding_cache is not None
        if cached:
            logger.info("task_agnostic_kd: the frozen encoder's embeddings are cached, so the feature-distillation "
                        "images are not augmented (each image is encoded once)")
        fit_stage(
            folder=folder, stage="feature_kd", model=model, task=task,
            dataset=SliceDataset(data.prepared, images,
                                 augment=None if cached else build_augmentation(config.data.augment),
                                 seed=config.seed, stacked=True),
            train=config.distill.train, context=context.at(1, 2),
            fingerprint={"distill": config.distill.to_dict(), "student": student.spec(),
                         "prepared": data.prepared.fingerprint, "frozen": _teacher_info(frozen),
                         "images": int(images.size), "augmented": not cached},
        )
        student = unwrap_student(model)
    summary["stages"]["feature_kd"] = {"folder": str(folder), **{k: v for k, v in read_json(folder / "stage.json").items()
                                                                 if k in ("metrics", "steps", "seconds")}}
    student = run_finetune_stage(run, data, config, student, context.at(2, 2))
    export_student(run, data, student, _teacher_info(frozen), summary, settings=config.export)


TASK_AGNOSTIC_KD = Method(
    name="task_agnostic_kd",
    title="task-agnostic KD: student encoder mimics the frozen foundation model's embeddings, then fine-tune",
    needs_teacher=False,
    configure=_configure,
    model_stages=_stages,
)
