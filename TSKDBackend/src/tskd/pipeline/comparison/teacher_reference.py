"""The fine-tuned teacher as a reference row of the benchmark table.

Not a student and not a method: the teacher that TS-KD and its ablation distil, scored on the same
test cases with the same metrics (through :class:`tskd.inference.torch_model.TorchSliceModel`, so
it segments exactly like a student, at its own input size), with its parameter count and its torch
time per slice. It tells how much of the teacher the students keep.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from tskd.data.dataset import Dataset
from tskd.data.labels import LabelTable
from tskd.inference.torch_model import TorchSliceModel
from tskd.pipeline.comparison.measure import test_metrics, time_per_slice
from tskd.pipeline.run_folder import RunFolder, read_json
from tskd.pipeline.teacher_stage import PREPROCESSING_JSON
from tskd.preprocess import NormalizationSpec
from tskd.student.base import count_parameters
from tskd.teacher.storage import load_teacher

__all__ = ["teacher_reference", "TEACHER_ROW"]

logger = logging.getLogger(__name__)

#: The name of the teacher's row in the results.
TEACHER_ROW = "teacher (reference)"


def teacher_reference(shared: RunFolder, dataset: Dataset, case_ids: list[str], *, batch_size: int = 16,
                      repeats: int = 10) -> dict[str, Any]:
    """Score the teacher of ``shared`` on ``case_ids``; the row's fields as a method's result has them.

    Args:
        shared: the run folder whose ``teacher/`` stage finished.
        dataset: the dataset holding the cases.
        case_ids: the test cases.
        batch_size / repeats: the time-per-slice measurement (torch, this process's threads).
    """
    teacher = load_teacher(shared.teacher)
    pre = read_json(shared.teacher / PREPROCESSING_JSON)
    labels = LabelTable.from_dict(pre["labels"])
    model = TorchSliceModel(teacher, input_size=teacher.input_size, label_values=labels.values,
                            normalization=NormalizationSpec.from_dict(pre["normalization"]),
                            slice_axis=int(pre["slice_axis"]))
    test = test_metrics(model, dataset, case_ids)
    ms = time_per_slice(model, batch_size=batch_size, repeats=repeats)
    stage = read_json(shared.teacher / "stage.json")
    note = "the fine-tuned teacher itself (torch), not a student"
    if not teacher.has_foundation_weights:
        note += "; NO foundation weights (trained from scratch)"
    return {
        "method": TEACHER_ROW, "title": "the teacher TS-KD distils", "note": note, "status": "done", "error": None,
        "student": teacher.architecture, "parameters": count_parameters(teacher), "input_size": teacher.input_size,
        "ms_per_slice": ms, "timing": {"runtime": "torch", "threads": torch.get_num_threads(),
                                       "batch_size": batch_size, "repeats": repeats},
        # the teacher's validation Dice is slice-level at its input size, not comparable to the students'
        # volume-level column: kept apart
        "val_dice": None, "slice_val_dice": stage.get("metrics", {}).get("val_dice"),
        "train_seconds": stage.get("seconds"),
        "test": {k: v for k, v in test.items() if k != "cases"}, "test_cases": test["cases"],
    }
