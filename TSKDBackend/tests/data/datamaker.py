"""Tiny images, labels and datasets written by the data tests (every format tskd reads)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk


def write(path: Path, array: np.ndarray, spacing: Sequence[float] | None = None,
          origin: Sequence[float] | None = None, direction: Sequence[float] | None = None,
          vector: bool = False) -> Path:
    """Write ``array`` (numpy order) with the given geometry; ``vector``: last axis = components."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=vector)
    dim = image.GetDimension()
    if spacing is not None:
        image.SetSpacing([float(s) for s in spacing])
    if origin is not None:
        image.SetOrigin([float(o) for o in origin])
    if direction is not None:
        image.SetDirection([float(d) for d in direction])
    assert image.GetDimension() == dim
    sitk.WriteImage(image, str(path), useCompression=path.suffix in (".gz", ".nrrd", ".mha"))
    return path


def volume(shape=(6, 10, 12), seed=0) -> np.ndarray:
    """A smooth int16 volume with a bright box (the 'organ')."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 50, size=shape).astype(np.int16)
    array[tuple(slice(s // 4, s // 4 + max(1, s // 2)) for s in shape)] += 200
    return array


def label_for(shape=(6, 10, 12), values=(1, 2)) -> np.ndarray:
    """A label map with one small box per value, side by side along the last axis."""
    label = np.zeros(shape, np.uint8)
    for n, value in enumerate(values):
        index = [slice(s // 4, s // 4 + 2) for s in shape[:-1]] + [slice(1 + 3 * n, 3 + 3 * n)]
        label[tuple(index)] = value
    return label


def folder_dataset(root: Path, n: int = 3, *, dim: int = 3, suffix: str = ".nii.gz", label_dir: str = "labels",
                   values=(1, 2)) -> Path:
    """``root/images`` + ``root/<label_dir>`` with ``n`` cases ``case_<i>``."""
    shape = (6, 10, 12) if dim == 3 else (10, 12)
    for i in range(n):
        write(root / "images" / f"case_{i}{suffix}", volume(shape, seed=i).astype(np.uint8 if dim == 2 else np.int16),
              spacing=(0.8, 0.8, 2.0)[:dim])
        write(root / label_dir / f"case_{i}{suffix}", label_for(shape, values), spacing=(0.8, 0.8, 2.0)[:dim])
    return root


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_dicom_series(folder: Path, array: np.ndarray, spacing=(0.7, 0.7, 2.5), origin=(-10.0, 20.0, 5.0),
                       series_uid: str = "1.2.826.0.1.3680043.2.1125.1.1") -> Path:
    """One CT series (int16 slices) with the tags a reader needs to rebuild the volume's geometry."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    now = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
    for k in range(array.shape[0]):
        image = sitk.GetImageFromArray(array[k].astype(np.int16))
        image.SetSpacing(spacing[:2])
        position = (origin[0], origin[1], origin[2] + k * spacing[2])
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series_uid}.{k + 1}",
            "0008|0020": now[0], "0008|0030": now[1],
            "0010|0010": "Phantom^Test", "0010|0020": "TSKD0001",
            "0020|000d": series_uid.rsplit(".", 1)[0] + ".9",
            "0020|000e": series_uid,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{p:.6f}" for p in position),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0018|0050": f"{spacing[2]:.6f}",
            "0028|0030": f"{spacing[1]:.6f}\\{spacing[0]:.6f}",
        }
        for key, value in tags.items():
            image.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice_{k:03d}.dcm"))
        writer.Execute(image)
    return folder
