from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from tskd.errors import DataError
from tskd.student import (
    DistillConfig,
    DistillationTask,
    FeatureDistillationTask,
    FeatureProjector,
    StudentWithProjector,
    SupervisedTask,
    build_student,
    evaluate_dice,
    logit_kd_loss,
)


class _Samples(Dataset):
    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i].numpy(), "label": self.labels[i].numpy()}


class _Threshold(nn.Module):
    """Predicts class 1 where the image exceeds 0.5 (``invert`` flips it)."""

    def __init__(self, invert: bool = False):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(-10.0 if invert else 10.0))

    def forward(self, x):
        fg = self.scale * (x - 0.5)
        return torch.cat([-fg, fg], dim=1)


def _train(task, model, batch, steps, lr=1e-2):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    history = []
    model.train()
    for _ in range(steps):
        loss, metrics = task.training_step(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(metrics)
    return history


def test_distillation_makes_the_student_match_the_teacher(disc_batch, discs):
    torch.manual_seed(0)
    val_images, val_labels = discs(4, seed=1)
    student = build_student("unet_tiny", num_classes=2, input_size=32)
    cfg = DistillConfig(student="unet_tiny", temperature=2.0, w_kd=1.0, w_sup=1.0)
    task = DistillationTask(config=cfg, num_classes=2, val_data=_Samples(val_images, val_labels), val_batch_size=2)

    def kd_now():
        student.eval()
        with torch.no_grad():
            return float(logit_kd_loss(student(disc_batch["image"]), disc_batch["soft"], 2.0))

    kd_before, dice_before = kd_now(), task.validate(student)["val_dice"]
    history = _train(task, student, disc_batch, steps=40)
    kd_after, val = kd_now(), task.validate(student)
    assert set(history[0]) == {"loss", "kd", "kd_dice", "sup", "labelled"} and history[0]["labelled"] == 0.25
    assert kd_after < 0.5 * kd_before
    assert sum(h["loss"] for h in history[-5:]) < 0.5 * sum(h["loss"] for h in history[:5])
    assert val["val_dice"] > max(0.8, dice_before)
    student.train()
    task.validate(student)
    assert student.training  # validation puts the model back into its mode


def test_distillation_with_feature_kd_trains_student_and_projector(disc_batch):
    torch.manual_seed(0)
    student = build_student("unet_tiny", num_classes=2, input_size=32)
    model = StudentWithProjector(student=student, projector=FeatureProjector(student.feature_channels, 6))
    embed = nn.Conv2d(1, 6, 1)  # a fixed "teacher encoder" on a 4x4 grid (student features are 2x2)
    with torch.no_grad():
        disc_batch["teacher_embedding"] = embed(nn.functional.adaptive_avg_pool2d(disc_batch["image"], 4))
    cfg = DistillConfig(student="unet_tiny", w_feat=1.0)
    task = DistillationTask(config=cfg, num_classes=2)
    projector_before = model.projector.proj.weight.detach().clone()
    history = _train(task, model, disc_batch, steps=30)
    assert {"kd", "sup", "feat"} <= set(history[0])
    assert history[-1]["feat"] < 0.5 * history[0]["feat"]
    assert not torch.equal(model.projector.proj.weight, projector_before)
    with pytest.raises(ValueError, match="StudentWithProjector"):
        task.training_step(student, disc_batch)
    assert task.validate(model) == {}  # no validation data given


def test_feature_distillation_baseline(disc_batch):
    torch.manual_seed(0)
    student = build_student("unet_tiny", num_classes=2, input_size=32)
    model = StudentWithProjector(student=student, projector=FeatureProjector(student.feature_channels, 6))
    embed = nn.Conv2d(1, 6, 1)
    with torch.no_grad():
        disc_batch["teacher_embedding"] = embed(nn.functional.adaptive_avg_pool2d(disc_batch["image"], 4))
    val = [{"image": disc_batch["image"], "teacher_embedding": disc_batch["teacher_embedding"]}]
    task = FeatureDistillationTask(val_data=val)
    before = task.validate(model)["val_feat_mse"]
    history = _train(task, model, disc_batch, steps=30)
    after = task.validate(model)["val_feat_mse"]
    assert after < 0.5 * before and history[-1]["loss"] < history[0]["loss"]
    assert (task.best_metric, task.best_mode) == ("val_feat_mse", "min")
    with pytest.raises(DataError, match="teacher_embedding"):
        task.training_step(model, {"image": disc_batch["image"]})


def test_supervised_task_ignores_unlabelled_samples(disc_batch):
    torch.manual_seed(0)
    student = build_student("unet_tiny", num_classes=2, input_size=32).eval()
    task = SupervisedTask(num_classes=2)
    garbage = dict(disc_batch, label=disc_batch["label"].clone())
    garbage["label"][2:] = 99  # unlabelled samples carry meaningless labels
    only_labelled = {k: v[:2] for k, v in disc_batch.items()}
    loss_garbage, metrics = task.training_step(student, garbage)
    loss_labelled, _ = task.training_step(student, only_labelled)
    assert float(loss_garbage.detach()) == pytest.approx(float(loss_labelled.detach()), rel=1e-5)
    assert metrics["labelled"] == 0.25
    none = dict(disc_batch, labelled=torch.zeros(8, dtype=torch.bool))
    assert float(task.training_step(student, none)[0].detach()) == 0.0


def test_supervised_task_learns_the_discs(discs):
    torch.manual_seed(0)
    images, labels = discs(8)
    val_images, val_labels = discs(4, seed=1)
    student = build_student("unet_tiny", num_classes=2, input_size=32)
    task = SupervisedTask(num_classes=2, val_data=_Samples(val_images, val_labels))
    before = task.validate(student)["val_dice"]
    _train(task, student, {"image": images, "label": labels}, steps=40)
    assert task.validate(student)["val_dice"] > max(0.8, before + 0.2)


def test_evaluate_dice_values_and_empty_slices(discs):
    _, labels = discs(3, size=32)
    labels[2] = 0  # one slice without foreground
    images = labels.float().unsqueeze(1)
    perfect = evaluate_dice(_Threshold(), _Samples(images, labels), num_classes=2)
    assert perfect["val_dice"] == pytest.approx(1.0) and perfect["val_dice_global"] == pytest.approx(1.0)
    assert perfect["val_dice_class1"] == pytest.approx(1.0)
    inverted = evaluate_dice(_Threshold(invert=True), _Samples(images, labels), num_classes=2)
    assert inverted["val_dice"] == pytest.approx(0.0) and inverted["val_dice_global"] < 0.2
    # a false positive on the empty slice only lowers the pooled Dice
    noisy = images.clone()
    noisy[2, :, :8, :8] = 1.0
    fp = evaluate_dice(_Threshold(), _Samples(noisy, labels), num_classes=2)
    assert fp["val_dice"] == pytest.approx(1.0) and fp["val_dice_global"] < 1.0
    # nothing to find anywhere and nothing found: perfect
    empty = evaluate_dice(_Threshold(), [{"image": torch.zeros(2, 1, 16, 16), "label": torch.zeros(2, 16, 16)}], num_classes=2)
    assert empty["val_dice"] == 1.0


def test_evaluate_dice_skips_unlabelled_samples_and_refuses_empty_data(discs):
    _, labels = discs(4, size=32)
    images = labels.float().unsqueeze(1)
    garbage = labels.clone()
    garbage[2:] = 255  # unlabelled slices carry meaningless labels
    batch = {"image": images, "label": garbage, "labelled": torch.tensor([True, True, False, False])}
    scores = evaluate_dice(_Threshold(), [batch], num_classes=2)
    assert scores == evaluate_dice(_Threshold(), [{"image": images[:2], "label": labels[:2]}], num_classes=2)
    assert scores["val_dice"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="empty"):
        evaluate_dice(_Threshold(), [], num_classes=2)
    with pytest.raises(DataError, match="'image' and 'label'"):
        evaluate_dice(_Threshold(), [{"image": images}], num_classes=2)
