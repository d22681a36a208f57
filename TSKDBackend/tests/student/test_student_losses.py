from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tskd.errors import ConfigError, DataError
from tskd.losses import soft_dice_loss
from tskd.student import DistillConfig, DistillationLoss, SupervisedLoss, feature_kd_loss, logit_kd_loss
from tskd.student.losses import resize_probabilities


def _probs(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(shape, generator=g) * 2, dim=1)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
def test_kd_is_zero_for_equal_distributions_and_positive_otherwise(temperature):
    teacher = _probs((2, 3, 16, 16))
    same = logit_kd_loss(torch.log(teacher) + 5.0, teacher, temperature)  # logits up to a constant
    other = logit_kd_loss(torch.log(_probs((2, 3, 16, 16), seed=1)), teacher, temperature)
    assert abs(float(same)) < 1e-5
    assert float(other) > 0.01


def test_kd_matches_the_definition_with_t_squared():
    teacher, logits, t = _probs((2, 4, 8, 8)), torch.randn(2, 4, 8, 8), 3.0
    q = torch.softmax(torch.log(teacher) / t, dim=1)
    p = torch.softmax(logits / t, dim=1)
    manual = (q * (q.log() - p.log())).sum(1).mean() * t**2
    assert float(logit_kd_loss(logits, teacher, t)) == pytest.approx(float(manual), rel=1e-4)


def test_t_squared_scaling_keeps_the_high_temperature_limit():
    # For large T, T^2 * KL tends to the mean over pixels of sum_k (d_k - mean(d))^2 / (2K),
    # d = student logits - teacher logits (Hinton et al.); without the T^2 factor it would vanish.
    k, t = 4, 200.0
    teacher, logits = _probs((1, k, 4, 4)), torch.randn(1, k, 4, 4)
    d = logits - torch.log(teacher)
    limit = ((d - d.mean(1, keepdim=True)) ** 2).sum(1).mean() / (2 * k)
    assert float(logit_kd_loss(logits, teacher, t)) == pytest.approx(float(limit), rel=2e-2)


def test_kd_across_resolutions():
    # teacher at 16x16 with the same distribution everywhere: upsampling keeps it exactly
    vector = torch.tensor([0.7, 0.2, 0.1]).view(1, 3, 1, 1)
    teacher = vector.expand(2, 3, 16, 16)
    student_same = torch.log(vector).expand(2, 3, 64, 64)
    assert abs(float(logit_kd_loss(student_same, teacher, 2.0))) < 1e-6
    student_other = torch.zeros(2, 3, 64, 64)
    low = logit_kd_loss(student_other[..., :16, :16], teacher, 2.0)
    high = logit_kd_loss(student_other, teacher, 2.0)
    assert float(high) == pytest.approx(float(low), rel=1e-5) and float(high) > 0


def test_kd_with_float16_soft_labels_holding_zeros_is_finite():
    teacher = torch.zeros(1, 2, 8, 8, dtype=torch.float16)
    teacher[:, 0] = 1.0
    logits = torch.randn(1, 2, 16, 16, requires_grad=True)
    loss = logit_kd_loss(logits, teacher, 2.0)
    loss.backward()
    assert torch.isfinite(loss.detach()) and float(loss.detach()) > 0 and torch.isfinite(logits.grad).all()


def test_kd_rejects_mismatched_classes():
    with pytest.raises(ValueError, match="number of classes"):
        logit_kd_loss(torch.randn(1, 3, 8, 8), _probs((1, 2, 8, 8)))


def test_feature_kd_resizes_to_teacher_grid():
    teacher = torch.randn(2, 8, 4, 4)
    student = F.interpolate(teacher, size=(2, 2), mode="bilinear", align_corners=False)
    coarse = torch.ones(2, 8, 2, 2) * teacher.mean()
    upsampled = F.interpolate(coarse, size=(4, 4), mode="bilinear", align_corners=False)
    assert float(feature_kd_loss(teacher.clone(), teacher)) == 0.0
    assert float(feature_kd_loss(coarse, teacher)) == pytest.approx(float(F.mse_loss(upsampled, teacher)), rel=1e-6)
    assert float(feature_kd_loss(student, teacher)) > 0
    with pytest.raises(ValueError, match="same B and C_t"):
        feature_kd_loss(torch.randn(2, 4, 4, 4), teacher)


def test_supervised_loss_ignores_unlabelled_samples():
    torch.manual_seed(0)
    loss_fn = SupervisedLoss()
    label = (torch.rand(3, 16, 16) > 0.5).long()
    logits = 4 * F.one_hot(label, 2).permute(0, 3, 1, 2).float() + torch.randn(3, 2, 16, 16)
    labelled = torch.tensor([True, False, True])
    reference = loss_fn(logits[[0, 2]], label[[0, 2]])
    got = loss_fn(logits, label, labelled)
    label_changed = label.clone()
    label_changed[1] = 1 - label_changed[1]
    assert float(got) == pytest.approx(float(reference), rel=1e-6)
    assert float(loss_fn(logits, label_changed, labelled)) == pytest.approx(float(reference), rel=1e-6)
    assert float(loss_fn(logits, label_changed)) > 2 * float(reference)  # the flip matters when not masked


def test_supervised_loss_without_labelled_samples_is_zero_and_differentiable():
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    label = torch.full((2, 8, 8), 7)  # meaningless values must not be looked at
    loss = SupervisedLoss()(logits, label, torch.tensor([False, False]))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_supervised_loss_rejects_out_of_range_labels():
    with pytest.raises(DataError, match="0..1"):
        SupervisedLoss()(torch.randn(1, 2, 8, 8), torch.full((1, 8, 8), 3))


def test_distillation_loss_combines_the_weighted_parts():
    torch.manual_seed(0)
    cfg = DistillConfig(student="unet_tiny", w_kd=2.0, w_kd_dice=1.5, w_sup=0.5, w_feat=3.0, temperature=2.0)
    logits = torch.randn(2, 2, 16, 16)
    batch = {
        "soft": _probs((2, 2, 8, 8)),
        "label": (torch.rand(2, 16, 16) > 0.5).long(),
        "labelled": torch.tensor([True, False]),
        "teacher_embedding": torch.randn(2, 4, 4, 4),
    }
    projected = torch.randn(2, 4, 1, 1)
    total, parts = DistillationLoss(cfg)(logits, batch, projected)
    assert set(parts) == {"loss", "kd", "kd_dice", "sup", "feat", "labelled"}
    assert parts["loss"] == pytest.approx(
        2.0 * parts["kd"] + 1.5 * parts["kd_dice"] + 0.5 * parts["sup"] + 3.0 * parts["feat"], rel=1e-5)
    assert parts["kd"] == pytest.approx(float(logit_kd_loss(logits, batch["soft"], 2.0)), rel=1e-6)
    teacher = resize_probabilities(batch["soft"], (16, 16))
    assert parts["kd_dice"] == pytest.approx(float(soft_dice_loss(logits, teacher)), rel=1e-6)
    assert parts["labelled"] == 0.5 and float(total) == pytest.approx(parts["loss"])
    with pytest.raises(DataError, match="'teacher_embedding'"):
        DistillationLoss(cfg)(logits, {k: v for k, v in batch.items() if k != "teacher_embedding"}, projected)
    with pytest.raises(DataError, match="'soft'"):
        DistillationLoss(cfg)(logits, {k: v for k, v in batch.items() if k != "soft"}, projected)


def test_soft_dice_weighs_the_foreground_the_kl_divergence_drowns():
    """A student that predicts background everywhere is nearly perfect for the pixel-averaged KL when
    the foreground is small, and plainly wrong for the soft Dice (the reason for w_kd_dice)."""
    teacher = torch.zeros(1, 2, 32, 32)
    teacher[:, 0] = 0.99
    teacher[:, 1] = 0.01
    teacher[:, :, 14:18, 14:18] = torch.tensor([0.01, 0.99])[:, None, None]  # 1.6% foreground
    background_everywhere = torch.log(torch.tensor([0.99, 0.01]))[None, :, None, None].expand(1, 2, 32, 32)
    exact = torch.log(teacher)
    kl_gap = float(logit_kd_loss(background_everywhere, teacher, 1.0) - logit_kd_loss(exact, teacher, 1.0))
    dice_gap = float(soft_dice_loss(background_everywhere, teacher) - soft_dice_loss(exact, teacher))
    assert kl_gap < 0.1 and dice_gap > 0.5
    with pytest.raises(ValueError, match="differ"):
        soft_dice_loss(torch.randn(1, 2, 8, 8), teacher)


def test_distill_config_checks_its_fields():
    cfg = DistillConfig.from_dict({"w_feat": 1, "temperature": "4"})
    assert cfg.w_feat == 1.0 and cfg.temperature == 4.0 and cfg.student == "vit_tiny"
    with pytest.raises(ConfigError, match="unknown student 'resnet'"):
        DistillConfig.from_dict({"student": "resnet"}, source="run.yaml")
    with pytest.raises(ConfigError, match="temperature"):
        DistillConfig.from_dict({"temperature": 0})
    with pytest.raises(ConfigError, match="grad_accum_steps"):
        DistillConfig.from_dict({"train": {"batch_size": 6, "grad_accum_steps": 4}})
    partial = DistillConfig.from_dict({"train": {"max_steps": 7}})
    assert partial.train.max_steps == 7 and partial.train.batch_size == DistillConfig().train.batch_size


def test_stage_configs_round_trip_through_yaml(tmp_path):
    from tskd.student import FinetuneConfig, MAEConfig

    for cls, changes in [
        (DistillConfig, {"student": "unet_small", "w_feat": 0.5}),
        (FinetuneConfig, {"train": {"lr": 3e-5}}),
        (MAEConfig, {"masking_ratio": 0.6}),
    ]:
        cfg = cls.from_dict(changes)
        cfg.to_yaml(tmp_path / f"{cls.__name__}.yaml")
        assert cls.from_yaml(tmp_path / f"{cls.__name__}.yaml") == cfg
    assert FinetuneConfig().train.lr < DistillConfig().train.lr
    with pytest.raises(ConfigError, match="masking_ratio"):
        MAEConfig.from_dict({"masking_ratio": 1.0})
