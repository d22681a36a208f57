"""tskd.metrics: the one validation Dice (perfect, empty, absent classes, the fallback), its agreement
with MONAI's per-sample Dice, and the engine's one validation loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric
from monai.networks.utils import one_hot
from torch import nn

from tskd.engine.validation import device_of, evaluate_batches, mean_over_loader
from tskd.errors import DataError
from tskd.metrics import SegmentationDice, class_dice_key, mask_dice


def _squares(count: int, size: int = 16, classes: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.zeros(count, size, size, dtype=torch.long)
    for n in range(count):
        for k in range(1, classes):
            y, x = torch.randint(0, size - 5, (2,), generator=generator).tolist()
            labels[n, y:y + 5, x:x + 5] = k
    return labels


def test_mask_dice_values_and_empty_masks():
    a = np.zeros((4, 4), bool)
    a[:2] = True  # 8 pixels
    b = np.zeros((4, 4), bool)
    b[1:3] = True  # 8 pixels, 4 shared
    assert mask_dice(a, b) == pytest.approx(0.5)
    assert mask_dice(a, a) == 1.0
    assert mask_dice(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0  # nothing to find, nothing found
    assert mask_dice(a, np.zeros((4, 4))) == 0.0
    with pytest.raises(ValueError, match="differs"):
        mask_dice(a, np.zeros((3, 4)))


def test_perfect_prediction_scores_one_with_the_one_key_naming():
    labels = _squares(4)
    dice = SegmentationDice(3)
    dice.update(labels, labels)
    scores = dice.scores()
    assert set(scores) == {"val_dice", "val_dice_global", "val_dice_class1", "val_dice_class2"}
    assert all(v == pytest.approx(1.0) for v in scores.values())
    assert class_dice_key(2) == "val_dice_class2"


def test_per_sample_dice_agrees_with_monai_and_does_not_depend_on_the_batch_size():
    labels = _squares(6, seed=1)
    labels[2] = 0  # a slice without foreground
    prediction = _squares(6, seed=2)
    whole = SegmentationDice(3)
    whole.update(prediction, labels)
    in_parts = SegmentationDice(3)
    for i in range(0, 6, 4):
        in_parts.update(prediction[i:i + 4], labels[i:i + 4])
    assert in_parts.scores() == pytest.approx(whole.scores())
    monai = DiceMetric(include_background=False, reduction="mean_batch", ignore_empty=True)
    monai(y_pred=one_hot(prediction[:, None], 3, dim=1), y=one_hot(labels[:, None], 3, dim=1))
    expected = monai.aggregate()
    scores = whole.scores()
    assert [scores["val_dice_class1"], scores["val_dice_class2"]] == pytest.approx(expected.tolist(), abs=1e-6)
    assert scores["val_dice"] == pytest.approx(float(expected.mean()), abs=1e-6)


def test_false_positives_on_empty_slices_lower_only_the_pooled_dice():
    labels = _squares(2, classes=2)
    labels[1] = 0
    prediction = labels.clone()
    prediction[1, :4, :4] = 1  # 16 false-positive pixels where there is nothing to find
    dice = SegmentationDice(2)
    dice.update(prediction, labels)
    scores = dice.scores()
    assert scores["val_dice"] == pytest.approx(1.0)
    assert scores["val_dice_global"] == pytest.approx(2 * 25 / (25 + 16 + 25))


def test_a_class_absent_from_every_label_falls_back_to_its_pooled_dice_and_stays_out_of_val_dice():
    labels = _squares(3, classes=2)  # class 2 never occurs
    prediction = labels.clone()
    dice = SegmentationDice(3)
    dice.update(prediction, labels)
    never_predicted = dice.scores()
    assert never_predicted["val_dice_class2"] == 1.0 and never_predicted["val_dice"] == pytest.approx(1.0)
    prediction[0, :2, :2] = 2  # predicted where it is not
    dice.reset()
    dice.update(prediction, labels)
    predicted = dice.scores()
    assert predicted["val_dice_class2"] == 0.0
    assert predicted["val_dice"] == pytest.approx(predicted["val_dice_class1"])  # class 2 does not count
    assert predicted["val_dice_global"] == pytest.approx((mask_dice(prediction == 1, labels == 1) + 0.0) / 2)


def test_no_foreground_anywhere_gives_the_pooled_dice(caplog):
    empty = torch.zeros(2, 8, 8, dtype=torch.long)
    dice = SegmentationDice(2)
    dice.update(empty, empty)
    with caplog.at_level("WARNING", logger="tskd.metrics"):
        assert dice.scores() == {"val_dice": 1.0, "val_dice_global": 1.0, "val_dice_class1": 1.0}
    assert "no foreground class" in caplog.text
    dice.reset()
    dice.update(torch.ones_like(empty), empty)  # finds what is not there
    assert dice.scores()["val_dice"] == 0.0


def test_unlabelled_samples_are_skipped_and_bad_input_is_explained():
    labels = _squares(2, classes=2)
    garbage = labels.clone()
    garbage[1] = 255  # what an unlabelled slice carries
    dice = SegmentationDice(2)
    dice.update(labels, garbage, torch.tensor([True, False]))
    assert dice.samples == 1 and dice.scores()["val_dice"] == pytest.approx(1.0)
    with pytest.raises(DataError, match=r"label values must be in 0\.\.1"):
        dice.update(labels, garbage)
    with pytest.raises(ValueError, match="same"):
        dice.update(labels, labels[:, :4])
    with pytest.raises(ValueError, match="labelled has 3 entries"):
        dice.update(labels, labels, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="empty"):
        SegmentationDice(2).scores()
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationDice(1)


class _Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def test_the_validation_loop_restores_the_mode_and_weights_by_samples():
    model = _Scale().train()
    batches = [{"image": torch.ones(3, 1)}, {"image": torch.full((1, 1), 5.0)}]
    seen_modes = []

    def measure(model, batch):
        seen_modes.append((model.training, torch.is_grad_enabled()))
        return model(batch["image"]).mean()

    assert mean_over_loader(model, batches, measure) == pytest.approx((3 * 2.0 + 1 * 10.0) / 4)
    assert seen_modes == [(False, False), (False, False)] and model.training
    assert device_of(model) == torch.device("cpu") and device_of(nn.Identity()) == torch.device("cpu")
    with pytest.raises(ValueError, match="validation data is empty"):
        evaluate_batches(model, [], lambda m, b: None)

    def failing(model, batch):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        evaluate_batches(model, batches, failing)
    assert model.training  # restored on errors too
