"""Real student packages for the runtime, inference and CLI tests (untrained ``unet_tiny``, fast)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from tests.data.datamaker import write
from tskd.data.dataset import load_dataset
from tskd.data.labels import Label, LabelTable
from tskd.export import write_student_package
from tskd.preprocess import NormalizationSpec, apply_normalization, slices_along, stack_slices
from tskd.runtime import apply_postprocessing, segment_volume
from tskd.student import build_student

NAMES = {0: "background", 1: "liver", 4: "tumour", 300: "vessel"}
COLORS = {1: (1.0, 0.0, 0.0), 4: (0.0, 0.5, 1.0), 300: (0.2, 0.9, 0.2)}


def make_package(
    folder: Path,
    *,
    values: Sequence[int] = (0, 1, 4),
    input_size: int = 32,
    slice_axis: int = 0,
    normalization: NormalizationSpec | None = None,
    architecture: str = "unet_tiny",
    seed: int = 0,
    in_channels: int = 1,
) -> tuple[Path, torch.nn.Module]:
    """Write a package of a seeded, untrained student; returns the folder and the torch model."""
    torch.manual_seed(seed)
    student = build_student(architecture, num_classes=len(values), input_size=input_size, in_channels=in_channels)
    labels = LabelTable([Label(v, NAMES.get(v, f"label_{v}"), COLORS.get(v)) for v in values], source="test")
    path = write_student_package(
        folder,
        student=student,
        labels=labels,
        input_size=input_size,
        slice_axis=slice_axis,
        normalization=normalization or NormalizationSpec(mode="percentile", p_low=1.0, p_high=99.0),
        teacher_info={"architecture": "vit_b", "base": None, "base_sha256": None, "has_foundation_weights": False},
        metrics={"val_dice": 0.5, "per_class": {"1": 0.6, "4": 0.4}},
    )
    return path, student.eval()


def make_volume(shape=(7, 40, 52), seed=0) -> np.ndarray:
    """An int16 CT-like volume with smooth structures (so the untrained model's classes vary)."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    volume = 400 * np.sin(3 * i + 2 * j) + 300 * (k * k + j * j < 0.4) - 200 * (np.abs(i) < 0.3)
    volume += rng.normal(0, 30, shape)
    return np.round(volume).astype(np.int16)


def torch_reference(model: torch.nn.Module, volume: np.ndarray, *, values: Sequence[int], input_size: int,
                    axis: int, normalization: NormalizationSpec) -> np.ndarray:
    """Straightforward inference with torch: normalise the whole volume, resize, model, resize back, argmax."""
    normalised = apply_normalization(volume, normalization)
    slices = torch.from_numpy(np.ascontiguousarray(slices_along(normalised, axis)))[:, None]
    height, width = slices.shape[-2:]
    with torch.no_grad():
        x = F.interpolate(slices, size=(input_size, input_size), mode="bilinear", align_corners=False)
        logits = model(x)
        back = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    indices = back.argmax(dim=1).numpy()
    labels = np.asarray(values)[indices]
    return stack_slices(labels, axis, volume.shape)


def islands_dataset(root: Path, model, n: int = 3):
    """``n`` 3D cases (labels 1 and 4) in ``root/images`` + ``root/labels``, loaded; cases whose references are the model's own map with its islands removed: keeping the largest
    foreground component makes the prediction exact, so the choice must find it."""
    for i in range(n):
        volume = make_volume((7, 40, 52), seed=10 + i)
        raw = segment_volume(model, volume, postprocessing="none")
        write(root / "images" / f"case_{i}.nii.gz", volume, spacing=(0.8, 0.8, 2.0))
        write(root / "labels" / f"case_{i}.nii.gz", apply_postprocessing(raw, "largest_foreground", [1, 4]),
              spacing=(0.8, 0.8, 2.0))
    (root / "labels.json").write_text(json.dumps({"0": "background", "1": "liver", "4": "tumour"}), encoding="utf-8")
    return load_dataset(root)
