"""``find_unused_parameters``: each task declares whether a training step can leave a trainable
parameter without a gradient, and the declaration matches what one step's backward really does.

DDP runs with ``find_unused_parameters`` only for the tasks that declare it (it costs a graph search
per step); a task that declared False but left a parameter without a gradient would make DDP fail
on several processes. Each case builds the model and task as its stage does, from the ``tiny``
preset (the defaults, at test sizes), with the overrides named in the case.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.conftest import one_torch_thread
from tests.teacher.conftest import make_tiny_source
from tests.teacher.teacher_sam_reference import write_official_checkpoint

from tskd.engine import EngineConfig, Trainer, finds_unused_parameters
from tskd.pipeline.student_stage import TeacherEmbeddings
from tskd.runconfig import resolve_config
from tskd.student.base import FeatureProjector, StudentWithProjector
from tskd.student.mae import MAETask, build_mae
from tskd.student.networks import build_student
from tskd.student.specs import student_names
from tskd.student.tasks import DistillationTask, FeatureDistillationTask, SupervisedTask
from tskd.synthesis.model import build_diffusion_model
from tskd.synthesis.task import DiffusionTask
from tskd.teacher.build import build_teacher
from tskd.teacher.model import SamSegmenter
from tskd.teacher.task import TeacherTask

from .toy import SquaresTask

K = 3  # classes, background included
SIZE = 64  # the tiny preset's input size
B = 4


@pytest.fixture(autouse=True)
def single_thread():
    with one_torch_thread():
        yield


def config(**overrides):
    return resolve_config(preset="tiny", overrides=overrides or None)


def batch(size: int = SIZE) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    label = torch.zeros(B, size, size, dtype=torch.long)
    for c in range(1, K):  # every class in every sample, so no loss term is empty
        label[:, 8 * c:8 * c + 16, 8 * c:8 * c + 16] = c
    soft = torch.softmax(torch.randn(B, K, size // 2, size // 2, generator=g), dim=1)
    return {"image": torch.randn(B, 1, size, size, generator=g), "label": label,
            "labelled": torch.tensor([True, True, False, False]), "soft": soft.half()}


def frozen_teacher() -> SamSegmenter:
    torch.manual_seed(1)
    return build_teacher(config().teacher, K)


# ---------------------------------------------------------------- the cases: (model, task, batch)
def teacher_case(prompt_mode: str):
    cfg = config(teacher={"prompt_mode": prompt_mode}).teacher
    return build_teacher(cfg, K), TeacherTask.from_config(cfg, num_classes=K), batch()


def lora_teacher_case(base: Path):
    cfg = config(teacher={"base": str(base)}).teacher
    return build_teacher(cfg, K), TeacherTask.from_config(cfg, num_classes=K), batch()


def synthesis_case(mode: str):
    cfg = config(synthesis={"mode": mode}).synthesis
    model = build_diffusion_model(cfg, num_classes=K)
    return model.unet, DiffusionTask.for_model(model), batch()


def mae_case():
    cfg = config(distill={"student": "vit_nano"})
    return build_mae("vit_nano", input_size=SIZE, config=cfg.mae), MAETask(config=cfg.mae), batch()


def distill_case(student: str, **weights):
    cfg = config(distill={"student": student, **weights}).distill
    model = build_student(student, num_classes=K, input_size=SIZE)
    task = DistillationTask(config=cfg, num_classes=K)
    if cfg.w_feat > 0:  # as run_distill_stage builds it
        teacher = frozen_teacher()
        model = StudentWithProjector(student=model, projector=FeatureProjector(model.feature_channels,
                                                                               teacher.embedding_dim))
        task = TeacherEmbeddings(task, teacher)
    return model, task, batch()


def supervised_case(student: str):
    return build_student(student, num_classes=K, input_size=SIZE), SupervisedTask(num_classes=K), batch()


def feature_kd_case():
    # the task-agnostic KD method that tskd benchmark compares (methods/task_agnostic_kd.py)
    teacher = frozen_teacher()
    student = build_student(config().distill.student, num_classes=K, input_size=SIZE)
    model = StudentWithProjector(student=student, projector=FeatureProjector(student.feature_channels,
                                                                             teacher.embedding_dim))
    return model, TeacherEmbeddings(FeatureDistillationTask(), teacher), batch()


CASES = {
    "teacher": lambda: teacher_case("none"),
    "teacher_box": lambda: teacher_case("box"),
    "teacher_lora": lora_teacher_case,  # needs the tiny checkpoint (the tiny_sam fixture)
    "synthesis": lambda: synthesis_case("image"),
    "synthesis_joint": lambda: synthesis_case("joint"),
    "mae": mae_case,
    **{f"distill_{name}": (lambda name=name: distill_case(name)) for name in student_names()},
    "distill_feature_kd": lambda: distill_case("unet_tiny", w_feat=1.0),
    "distill_feature_kd_only": lambda: distill_case("unet_tiny", w_feat=1.0, w_kd=0.0, w_kd_dice=0.0, w_sup=0.0),
    **{f"supervised_{name}": (lambda name=name: supervised_case(name)) for name in student_names()},
    "feature_kd": feature_kd_case,
}
DECLARE_UNUSED = {"distill_feature_kd_only", "feature_kd"}


def without_gradient(model: torch.nn.Module, task, batch) -> list[str]:
    """Names of the trainable parameters one training step's backward leaves without a gradient."""
    torch.manual_seed(0)
    model.train()
    loss, _ = task.training_step(model, batch)
    loss.backward()
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    assert trainable, "the case has no trainable parameters"
    return [name for name, p in trainable if p.grad is None]


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory) -> Path:
    """A tiny SAM checkpoint in Meta's format, for the LoRA teacher (the teacher tests' fixture in small)."""
    path = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    write_official_checkpoint(make_tiny_source(), path)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_flag_matches_what_a_training_step_leaves_without_gradient(case, request):
    build = CASES[case]
    model, task, data = build(request.getfixturevalue("tiny_sam")) if case == "teacher_lora" else build()
    unused = without_gradient(model, task, data)
    declared = finds_unused_parameters(task)
    assert declared == (case in DECLARE_UNUSED)
    if declared:
        assert unused, f"{case} declares find_unused_parameters but every trainable parameter got a gradient"
    else:
        assert unused == [], f"{case}: no gradient for {unused[:5]} ({len(unused)} in all)"


def test_feature_kd_leaves_the_decoder_unused():
    model, task, data = feature_kd_case()
    unused = without_gradient(model, task, data)
    assert unused and not any(name.startswith("projector.") for name in unused)
    assert all(p.grad is not None for p in model.projector.parameters())


def test_wrapper_passes_on_its_inner_task_flag():
    teacher = frozen_teacher()
    assert TeacherEmbeddings(FeatureDistillationTask(), teacher).find_unused_parameters is True
    assert TeacherEmbeddings(SupervisedTask(num_classes=K), teacher).find_unused_parameters is False


def test_a_task_that_declares_nothing_gets_the_default():
    assert not hasattr(SquaresTask(), "find_unused_parameters")
    assert finds_unused_parameters(SquaresTask()) is False


@pytest.mark.parametrize(("task", "expected"), [(SquaresTask(), False), (FeatureDistillationTask(), True)])
def test_trainer_hands_the_flag_to_ddp(tmp_path, task, expected):
    trainer = Trainer(model=torch.nn.Linear(2, 2), task=task, train_dataset=[], out_dir=tmp_path,
                      config=EngineConfig(max_steps=1, batch_size=1, device="cpu"))
    accelerator = trainer._accelerator()
    assert accelerator.ddp_handler.find_unused_parameters is expected
