"""Student stages: distillation on the transfer set, then supervised fine-tuning on the labelled
cases (TS-KD's order), the supervised reference (the same student on the labelled cases alone, which
is also the benchmark's ``labelled_only`` method), plus the pieces the baselines reuse (MAE
pre-training, feature-only KD).

Each stage folder holds ``student.pt`` and ``stage.json`` (written last: the stage is done); the
training itself goes through :func:`tskd.pipeline.stage.fit_stage`, as every stage's does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tskd.data.augment import build_augmentation
from tskd.data.slice_dataset import SliceDataset, middle_slice
from tskd.engine import EngineConfig, TrainingTask, finds_unused_parameters, load_trainable_state
from tskd.engine.validation import device_of
from tskd.errors import ConfigError
from tskd.runconfig import PipelineConfig
from tskd.pipeline.data_stage import PreparedData
from tskd.pipeline.run_folder import RunFolder, read_json, reference_member_folder
from tskd.pipeline.stage import StageContext, fit_stage, stage_done
from tskd.student.base import (
    FeatureProjector,
    StudentModel,
    StudentWithProjector,
    unwrap_student,
)
from tskd.student.ensemble import StudentEnsemble
from tskd.student.networks import build_student
from tskd.student.storage import load_student
from tskd.student.tasks import DistillationTask, SupervisedTask
from tskd.data.transfer_set import TransferSetDataset
from tskd.teacher.model import SamSegmenter

__all__ = [
    "new_student",
    "run_distill_stage",
    "run_finetune_stage",
    "run_mae_stage",
    "run_reference_stage",
    "supervised_budget",
    "TeacherEmbeddings",
    "warm_start_student",
]

logger = logging.getLogger(__name__)


class TeacherEmbeddings(TrainingTask):
    """Wraps a task so that every batch carries ``teacher_embedding`` from a frozen SAM-layout model.

    The embeddings are computed on the fly on the batch's device (the teacher is moved there once),
    at the teacher's input size.
    """

    def __init__(self, task: Any, teacher: SamSegmenter) -> None:
        self.task = task
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    @property
    def find_unused_parameters(self) -> bool:
        """The wrapped task's flag (the frozen model is not part of the trained model)."""
        return finds_unused_parameters(self.task)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen model's image embeddings ``(B, C_t, S_t/16, S_t/16)`` of ``(B, 1, S, S)`` images
        (of the middle channel of the student's ``(B, 2c + 1, S, S)`` input: the teacher sees single slices)."""
        images = middle_slice(images)
        if device_of(self.teacher) != images.device:
            self.teacher.to(images.device)
        size = self.teacher.input_size
        if images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        return self.teacher.image_embeddings(images)

    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        batch = dict(batch)
        batch["teacher_embedding"] = self.embed(batch["image"])
        return self.task.training_step(model, batch)

    def validate(self, model: nn.Module) -> dict[str, float]:
        return self.task.validate(model)


def new_student(config: PipelineConfig, data: PreparedData, *, name: str | None = None,
                seed_offset: int = 0) -> StudentModel:
    """A freshly initialised student (seeded with the run's seed plus ``seed_offset``, so a restarted
    stage starts from the same weights)."""
    torch.manual_seed(config.seed + seed_offset)
    return build_student(name or config.distill.student, num_classes=data.num_classes, input_size=data.input_size,
                         in_channels=data.prepared.channels)


def warm_start_student(student: StudentModel, path: Path) -> StudentModel:
    """Give the freshly built ``student`` the weights of the student saved at ``path`` (an update
    starts from the previous run's student).

    Raises:
        ConfigError: the saved student is another network (name, classes, input size, channels).
    """
    previous = load_student(path)
    if previous.spec() != student.spec():
        raise ConfigError(
            f"{path}: the previous student is {previous.spec()}, this run's is {student.spec()}; an update "
            "keeps the student (distill.student, input size, classes, data.prepared.context_slices), or train "
            "from scratch"
        )
    student.load_state_dict(previous.state_dict())
    student.train()
    logger.info("student: starting from %s", path)
    return student


def _val(data: PreparedData) -> SliceDataset | None:
    return SliceDataset(data.prepared, data.val, stacked=True) if data.val.size else None


def run_mae_stage(run: RunFolder, data: PreparedData, config: PipelineConfig, context: StageContext,
                  *, folder: Path | None = None) -> nn.Module:
    """MAE pre-training of the ViT student's encoder on every training image (labelled or not)."""
    from tskd.student.mae import MAETask, build_mae  # lazy: MONAI, only for a ViT student

    folder = folder or run.mae
    torch.manual_seed(config.seed)
    mae = build_mae(config.distill.student, input_size=data.input_size, in_channels=data.prepared.channels,
                    config=config.mae)
    if stage_done(folder):
        load_trainable_state(mae, torch.load(folder / "mae.pt", map_location="cpu", weights_only=True), source=str(folder))
        return mae
    images = torch.cat([torch.as_tensor(data.train_labelled), torch.as_tensor(data.train_unlabelled)]).numpy()
    fit_stage(
        folder=folder, stage="mae", model=mae, task=MAETask(config=config.mae, val_data=_val(data)),
        dataset=SliceDataset(data.prepared, images, augment=build_augmentation(config.data.augment), seed=config.seed,
                             stacked=True),
        train=config.mae.train, context=context,
        fingerprint={"mae": config.mae.to_dict(), "student": config.distill.student, "prepared": data.prepared.fingerprint},
        save=lambda m: torch.save({k: v.cpu() for k, v in m.state_dict().items()}, folder / "mae.pt"),
    )
    return mae


def run_distill_stage(
    run: RunFolder, data: PreparedData, config: PipelineConfig, teacher: SamSegmenter, context: StageContext,
    *, folder: Path | None = None, transfer_set: Path | None = None, start_from: Path | None = None,
) -> StudentModel:
    """Distil the fine-tuned teacher into the student on the transfer set (logit KD + supervised on
    labelled items + optional feature KD); ``start_from``: a previous student's ``student.pt`` to
    start from (an update) instead of a fresh initialisation."""
    folder = folder or run.distill
    if stage_done(folder):
        return load_student(folder / "student.pt")
    cfg = config.distill
    student = new_student(config, data)
    if start_from is not None:
        warm_start_student(student, start_from)
    elif cfg.mae_pretrain:
        from tskd.student.mae import transfer_mae_encoder  # lazy: MONAI, only for a ViT student

        mae = run_mae_stage(run, data, config, context)
        transfer_mae_encoder(mae, student)
        logger.info("distill: student encoder initialised from MAE pre-training")
    model: nn.Module = student
    task: Any = DistillationTask(config=cfg, num_classes=data.num_classes, val_data=_val(data))
    if cfg.w_feat > 0:
        model = StudentWithProjector(student=student, projector=FeatureProjector(student.feature_channels,
                                                                                 teacher.embedding_dim))
        task = TeacherEmbeddings(task, teacher)
    fit_stage(
        folder=folder, stage="distill", model=model, task=task,
        dataset=TransferSetDataset(transfer_set or run.transfer_set, prepared=data.prepared), train=cfg.train,
        context=context,
        fingerprint={"distill": cfg.to_dict(), "student": student.spec(), "prepared": data.prepared.fingerprint,
                     "transfer_set": read_json((transfer_set or run.transfer_set) / "stage.json")["counts"],
                     **_start(start_from, student)},
    )
    return unwrap_student(model)


def run_finetune_stage(
    run: RunFolder, data: PreparedData, config: PipelineConfig, student: StudentModel, context: StageContext,
    *, folder: Path | None = None, stage: str = "finetune",
) -> StudentModel:
    """Supervised fine-tuning (Dice + CE) of ``student`` on the labelled training slices."""
    folder = folder or run.finetune
    if stage_done(folder):
        return load_student(folder / "student.pt")
    augment = build_augmentation(config.data.augment)
    fit_stage(
        folder=folder, stage=stage, model=student,
        task=SupervisedTask(num_classes=data.num_classes, val_data=_val(data)),
        dataset=SliceDataset(data.prepared, data.train_labelled, augment=augment, seed=config.seed, stacked=True),
        train=config.finetune.train, context=context,
        fingerprint={"finetune": config.finetune.to_dict(), "prepared": data.prepared.fingerprint,
                     "start": student.spec(), "start_weights": _digest(student)},
    )
    return student


def supervised_budget(config: PipelineConfig) -> EngineConfig:
    """The reference's training settings: the distill section's, for distill + fine-tune steps.

    A student trained from scratch gets the learning rate, batch size and warm-up of distillation
    (not fine-tuning's lower rate, which is meant to refine distilled weights) and the number of
    optimisation steps TS-KD gives its student in all.
    """
    train = config.distill.train.to_dict()
    train["max_steps"] = config.distill.train.max_steps + config.finetune.train.max_steps
    train["best_metric"] = "val_dice"  # what SupervisedTask validates (distill's may be a KD metric)
    return EngineConfig.from_dict(train, source="reference budget (distill.train + finetune steps)")


def run_reference_stage(
    run: RunFolder, data: PreparedData, config: PipelineConfig, context: StageContext,
    *, folder: Path | None = None, stage: str = "reference", start_from: Path | None = None,
) -> StudentModel:
    """The supervised reference: a fresh student (``distill.student``) trained with Dice + CE on the
    labelled training slices alone, with the run's augmentation, for :func:`supervised_budget`
    (``start_from``: a previous reference's ``student.pt`` to start from instead, in an update).

    With ``reference.members`` n > 1, n such students, member k with the run's and the training seed
    plus k (its initial weights, batch order and augmentation draws), the
    first in ``folder``, the others in ``folder/members/k``; the reference is then their
    :class:`~tskd.student.ensemble.StudentEnsemble` (an update starts each member from the previous
    run's member of the same index, where it had one).

    Resumable like every stage (``RUN/student/reference/checkpoints``; each member on its own);
    a member is skipped when its ``stage.json`` exists. ``tskd train`` runs it next to TS-KD's
    student, the benchmark as ``labelled_only``.
    """
    folder = folder or run.reference
    count = config.reference.members
    members = []
    for index in range(count):
        member_start = start_from
        if start_from is not None and index > 0:
            previous = reference_member_folder(start_from.parent, index) / start_from.name
            member_start = previous if previous.is_file() else None
        members.append(_train_reference_member(
            reference_member_folder(folder, index), data, config, context, stage=stage if count == 1 else f"{stage} {index + 1}/{count}",
            start_from=member_start, seed_offset=index))
    return members[0] if count == 1 else StudentEnsemble(members)


def _train_reference_member(folder: Path, data: PreparedData, config: PipelineConfig, context: StageContext, *,
                            stage: str, start_from: Path | None, seed_offset: int) -> StudentModel:
    """One labels-only student of the reference (:func:`run_reference_stage`)."""
    if stage_done(folder):
        return load_student(folder / "student.pt")
    student = new_student(config, data, seed_offset=seed_offset)
    if start_from is not None:
        warm_start_student(student, start_from)
    train = supervised_budget(config)
    if seed_offset:
        train = EngineConfig.from_dict({**train.to_dict(), "seed": train.seed + seed_offset},
                                       source=f"reference member {seed_offset} (seed + {seed_offset})")
    fit_stage(
        folder=folder, stage=stage, model=student,
        task=SupervisedTask(num_classes=data.num_classes, val_data=_val(data)),
        dataset=SliceDataset(data.prepared, data.train_labelled, augment=build_augmentation(config.data.augment),
                             seed=config.seed, stacked=True),
        train=train, context=context,
        fingerprint={"reference": train.to_dict(), "student": student.spec(), "prepared": data.prepared.fingerprint,
                     "augment": config.data.augment.to_dict(), **_start(start_from, student)},
    )
    return student


def _start(start_from: Path | None, student: nn.Module) -> dict[str, Any]:
    """The fingerprint entry of a warm start (none for a fresh, seeded start: older runs resume)."""
    return {} if start_from is None else {"start_from": str(start_from), "start_weights": _digest(student)}


def _digest(model: nn.Module) -> float:
    """A cheap fingerprint of the starting weights (their sum), so a changed start is noticed."""
    with torch.no_grad():
        return round(float(sum(p.double().sum() for p in model.parameters())), 6)
