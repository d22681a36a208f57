"""Regression: students trained on a few real labelled volumes learn every class.

Three MSD hippocampus volumes train (one validates), six volumes of other subjects test, scored at
full resolution like every package. tskd 0.1 shipped students that never learnt the anterior class
(test Dice 0.00-0.05) and distilled students that predicted no foreground at all; both are checked
here: the labelled-only student through the benchmark's own method, and distillation from a
perfect "teacher" (the labels, softened) through the distillation task with its default loss.
Chance level for a class that covers a few percent of the voxels is a Dice near 0.05.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from tests.conftest import shared_dataset

from tskd.data.dataset import load_dataset
from tskd.inference.torch_model import TorchSliceModel
from tskd.runconfig import resolve_config
from tskd.pipeline.data_stage import load_prepared_data
from tskd.pipeline.export_stage import score_slice_model
from tskd.pipeline.comparison.methods import get_method
from tskd.pipeline.run import run_stages
from tskd.pipeline.run_folder import RunFolder
from tskd.pipeline.stage import StageContext, fit_stage
from tskd.pipeline.student_stage import new_student
from tskd.runtime import OnnxSegmenter, StudentPackage
from tskd.student import DistillationTask
from tskd.data.transfer_set import TransferSetDataset, TransferSetWriter

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

TRAIN = ["hippocampus_003", "hippocampus_004", "hippocampus_007", "hippocampus_008"]  # 3 train + 1 validation
TEST = ["hippocampus_014", "hippocampus_015", "hippocampus_017", "hippocampus_019", "hippocampus_023",
        "hippocampus_024"]
#: Well above chance, below what the students reach (0.72-0.76 per class labelled only, 0.64-0.70 distilled).
MIN_DICE = 0.6


@pytest.fixture(scope="module")
def hippocampus(tmp_path_factory):
    root = shared_dataset("hippocampus")
    folder = tmp_path_factory.mktemp("hippocampus")
    with (folder / "cases.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label"])
        for case in TRAIN:
            writer.writerow([root / "imagesTr" / f"{case}.nii.gz", root / "labelsTr" / f"{case}.nii.gz"])
    # the benchmark's small settings (64-pixel slices, batches of 8) with about half its steps: 240 supervised
    # steps for the labelled-only student, 160 for distillation. Per-class test Dice, one thread (2026-12-06):
    #   labelled only  450 steps 0.748 / 0.724   240 steps 0.757 / 0.721
    #   distillation   300 steps 0.692 / 0.637   220 steps 0.700 / 0.637   160 steps 0.698 / 0.648
    # (the same margin over MIN_DICE as with the longer schedule, in about half the time)
    config = resolve_config(preset="cpu-small", overrides={
        "data": {"prepared": {"input_size": 64}, "val_fraction": 0.25},
        "teacher": {"input_size": 64},
        "distill": {"train": {"max_steps": 160, "batch_size": 8, "warmup_steps": 20, "validate_every": 50}},
        "finetune": {"train": {"max_steps": 80, "batch_size": 8, "warmup_steps": 10, "validate_every": 25}},
    })
    method_config, _ = get_method("labelled_only").configure(config)
    run = RunFolder(folder / "run")
    run_stages(str(folder / "cases.csv"), run.root, method_config, stages=("data",))
    return {"manifest": str(folder / "cases.csv"), "run": run, "config": config, "method_config": method_config,
            "test": load_dataset(str(root)), "data": load_prepared_data(run)}


def _per_class(model, dataset) -> dict[int, float]:
    summary = score_slice_model(model, dataset, TEST)
    return {int(k): v["dice"] for k, v in summary["per_class"].items()}


def test_the_labelled_only_student_learns_every_class(hippocampus):
    assert len(hippocampus["data"].split["train"]) == 3 and len(hippocampus["data"].split["val"]) == 1
    method = get_method("labelled_only")
    run_stages(hippocampus["manifest"], hippocampus["run"].root, hippocampus["method_config"],
               model_stages=method.model_stages)
    dice = _per_class(OnnxSegmenter(StudentPackage.load(hippocampus["run"].package)), hippocampus["test"])
    assert sorted(dice) == [1, 2]
    assert min(dice.values()) > MIN_DICE, dice


def test_distillation_with_the_default_loss_learns_every_class(hippocampus, tmp_path):
    """The teacher's probabilities are the labels themselves (0.98 on the true class): a student that
    cannot learn from them cannot learn from a real teacher either."""
    data, config = hippocampus["data"], hippocampus["config"]
    indices = np.concatenate([data.train_labelled, data.train_unlabelled])
    images = np.asarray(data.prepared.images[indices], dtype=np.float32)
    labels = np.asarray(data.prepared.labels[indices], dtype=np.int64)
    soft = np.full((len(indices), data.num_classes, *labels.shape[1:]), 0.01, dtype=np.float32)
    np.put_along_axis(soft, labels[:, None], 1.0 - 0.01 * (data.num_classes - 1), axis=1)
    with TransferSetWriter(tmp_path / "transfer", image_size=data.input_size, num_classes=data.num_classes) as writer:
        slices = [data.prepared.slices[int(i)] for i in indices]  # as the transfer stage records them, so that
        writer.add_batch(images, soft, source="real_unlabelled",  # the student gets each slice's neighbours too
                         case_ids=[s["case_id"] for s in slices], slice_indices=[s["slice_index"] for s in slices])
        # (no hard labels: the KD terms alone)
    student = new_student(config, data)
    fit_stage(folder=tmp_path / "distill", stage="distill", model=student,
              task=DistillationTask(config=config.distill, num_classes=data.num_classes),
              dataset=TransferSetDataset(tmp_path / "transfer", prepared=data.prepared), train=config.distill.train,
              fingerprint={}, context=StageContext())
    model = TorchSliceModel(student.eval(), input_size=data.input_size, label_values=data.labels.values,
                            normalization=data.normalization, slice_axis=data.slice_axis)
    with torch.no_grad():
        dice = _per_class(model, hippocampus["test"])
    assert min(dice.values()) > MIN_DICE, dice
