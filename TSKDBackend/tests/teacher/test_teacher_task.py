"""TeacherTask: the loss falls on a trivial task, validation Dice, labelled filtering, box mode."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from tskd.teacher.build import build_scratch_segmenter, build_teacher
from tskd.teacher.config import LoraConfig, TeacherConfig
from tskd.teacher.task import TeacherTask

SIZE = 48


class Squares(Dataset):
    """A bright square on noise; the label is the square (class 1), or a second, dimmer one (class 2)."""

    def __init__(self, count: int, seed: int, num_classes: int = 2) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.samples = []
        for _ in range(count):
            image = 0.3 * torch.randn(1, SIZE, SIZE, generator=generator)
            label = torch.zeros(SIZE, SIZE, dtype=torch.long)
            for cls, value in zip(range(1, num_classes), (2.0, -2.0)):
                y, x = torch.randint(0, SIZE - 18, (2,), generator=generator).tolist()
                image[0, y:y + 16, x:x + 16] += value
                label[y:y + 16, x:x + 16] = cls
            self.samples.append({"image": image, "label": label, "labelled": torch.tensor(True)})

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return self.samples[index]


def test_loss_falls_and_validation_dice_rises():
    torch.manual_seed(0)
    model = build_scratch_segmenter("tiny", input_size=SIZE, num_classes=2)
    task = TeacherTask(num_classes=2, val_data=Squares(8, seed=1), val_batch_size=4)
    before = task.validate(model)
    assert set(before) == {"val_dice", "val_dice_global", "val_dice_class1"} and 0.0 <= before["val_dice"] <= 1.0
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    loader = DataLoader(Squares(16, seed=0), batch_size=8, shuffle=True)
    model.train()
    losses = []
    for _ in range(12):
        for batch in loader:
            loss, logs = task.training_step(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(logs["loss"])
            assert logs["labelled"] == 8.0 and logs["loss"] == pytest.approx(float(loss.detach()))
    assert sum(losses[-4:]) / 4 < 0.6 * sum(losses[:2]) / 2, losses
    after = task.validate(model)
    assert model.training  # validate restores the mode
    assert after["val_dice"] > before["val_dice"] + 0.2, (before, after)


def test_unlabelled_samples_do_not_count():
    torch.manual_seed(0)
    model = build_scratch_segmenter("tiny", input_size=SIZE, num_classes=2)
    task = TeacherTask(num_classes=2)
    batch = next(iter(DataLoader(Squares(4, seed=2), batch_size=4)))
    batch["labelled"] = torch.tensor([True, False, False, True])
    part, logs = task.training_step(model, batch)
    assert logs["labelled"] == 2.0
    only = {k: v[[0, 3]] for k, v in batch.items()}
    only_loss, _ = task.training_step(model, only)
    assert torch.allclose(part, only_loss)
    batch["labelled"] = torch.zeros(4, dtype=torch.bool)
    none, logs = task.training_step(model, batch)
    assert float(none.detach()) == 0.0 and logs == {"loss": 0.0, "labelled": 0.0}
    none.backward()  # still connected to the trainable weights
    assert task.validate(model) == {}
    # validation scores the labelled samples only, and refuses data without any
    def samples(batch):
        return [{k: v[i] for k, v in batch.items()} for i in range(len(batch["image"]))]

    garbage = dict(batch, labelled=torch.tensor([True, False, False, True]), label=batch["label"].clone())
    garbage["label"][1:3] = 255
    clean = dict({k: v[[0, 3]] for k, v in batch.items()}, labelled=torch.ones(2, dtype=torch.bool))
    assert TeacherTask(num_classes=2, val_data=samples(garbage)).validate(model) == \
        TeacherTask(num_classes=2, val_data=samples(clean)).validate(model)
    garbage["labelled"] = torch.zeros(4, dtype=torch.bool)
    with pytest.raises(ValueError, match="empty"):
        TeacherTask(num_classes=2, val_data=samples(garbage)).validate(model)


def test_box_mode_on_a_lora_teacher(tiny_checkpoints):
    torch.manual_seed(0)
    config = TeacherConfig(base=str(tiny_checkpoints.official_pth), input_size=SIZE, prompt_mode="box",
                           lora=LoraConfig(rank=2))
    model = build_teacher(config, num_classes=3)
    task = TeacherTask.from_config(config, num_classes=3, val_data=Squares(4, seed=3, num_classes=3))
    batch = next(iter(DataLoader(Squares(4, seed=4, num_classes=3), batch_size=4)))
    loss, _ = task.training_step(model, batch)
    loss.backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if ".lora_B." in n]
    assert lora_grads and all(g is not None for g in lora_grads)
    assert all(p.grad is None for p in model.sam.prompt_encoder.parameters())
    scores = task.validate(model)
    assert set(scores) == {"val_dice", "val_dice_global", "val_dice_class1", "val_dice_class2"}


def test_bad_batches_are_explained():
    model = build_scratch_segmenter("tiny", input_size=SIZE, num_classes=2)
    task = TeacherTask(num_classes=2)
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        task.training_step(model, {"image": torch.zeros(1, 1, SIZE, SIZE), "label": torch.full((1, SIZE, SIZE), 2)})
    with pytest.raises(ValueError, match="needs 'image' and 'label'"):
        task.training_step(model, {"image": torch.zeros(1, 1, SIZE, SIZE)})
    with pytest.raises(ValueError, match="prompt_mode"):
        TeacherTask(num_classes=2, prompt_mode="points")
