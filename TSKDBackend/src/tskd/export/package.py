"""Writing the student package (``docs/student-package.md``), zipping it, and reloading its torch weights.

:func:`write_student_package` exports the student to ONNX, checks onnxruntime against torch,
saves the torch weights with the arguments that rebuild the network, and writes
``tskd-model.json``; everything goes into a temporary folder that is renamed into place at the
end, so a package folder is either complete or absent. :mod:`tskd.runtime` reads what this writes.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from tskd import __version__
from tskd.atomic import atomic_write, replace_folder
from tskd.data.labels import LabelTable
from tskd.errors import CheckpointError
from tskd.export.onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx, verify_onnx
from tskd.preprocess import NormalizationSpec
from tskd.runtime.package import (
    FORMAT_NAME,
    FORMAT_VERSION,
    FORMAT_VERSION_SINGLE_SLICE,
    METADATA_NAME,
    ONNX_NAME,
    PACKAGE_SUFFIX,
    TORCH_NAME,
    StudentPackage,
)
from tskd.student.base import StudentModel, count_parameters, unwrap_student
from tskd.student.networks import build_from_spec

__all__ = ["write_student_package", "zip_package", "load_torch_student", "verification_inputs", "WEIGHTS_FORMAT"]

logger = logging.getLogger(__name__)

OPSET = 17
WEIGHTS_FORMAT = "tskd-student-weights"


def verification_inputs(input_size: int, *, seed: int = 0, count: int = 4) -> np.ndarray:
    """Inputs for the ONNX check when no real slices are at hand: seeded noise and structured images.

    Returns:
        float32 ``(2 * count, 1, S, S)``: ``count`` standard-normal images, then smooth gradients,
        a bright square, a step edge and a sine pattern (repeated to ``count``).
    """
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((count, 1, input_size, input_size)).astype(np.float32)
    yy, xx = np.meshgrid(np.linspace(-1, 1, input_size), np.linspace(-1, 1, input_size), indexing="ij")
    patterns = [xx + yy, ((np.abs(xx) < 0.4) & (np.abs(yy) < 0.4)) * 3.0, np.sign(xx) * 2.0, np.sin(6 * xx) * yy]
    structured = np.stack([patterns[i % len(patterns)] for i in range(count)])[:, None].astype(np.float32)
    return np.concatenate([noise, structured])


def _json_safe(value: Any, where: str) -> Any:
    """Plain JSON values: numpy scalars become numbers, NaN/inf become null, tensors are refused."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    raise ValueError(f"{where}: {type(value).__name__} cannot be stored in {METADATA_NAME}")


def _teacher_entry(teacher_info: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if teacher_info is None:
        return None
    if not isinstance(teacher_info, Mapping) or "architecture" not in teacher_info:
        raise ValueError(f"teacher_info must be a mapping with at least 'architecture', got {teacher_info!r}")
    entry = {"architecture": str(teacher_info["architecture"]), "base": None, "base_sha256": None,
             "has_foundation_weights": False}
    entry.update(teacher_info)
    entry["has_foundation_weights"] = bool(entry["has_foundation_weights"])
    return _json_safe(entry, "teacher")


def _check_arguments(student: StudentModel, labels: LabelTable, input_size: int, slice_axis: int,
                     normalization: NormalizationSpec) -> None:
    if not isinstance(labels, LabelTable):
        raise ValueError(f"labels must be a tskd.data.labels.LabelTable, got {type(labels).__name__}")
    if labels.num_classes != student.num_classes:
        raise ValueError(f"the label table has {labels.num_classes} classes but the student outputs {student.num_classes}")
    if input_size != student.input_size:
        raise ValueError(f"input_size {input_size} differs from the student's input size {student.input_size}")
    if slice_axis not in (0, 1, 2):
        raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis!r}")
    if int(student.in_channels) % 2 != 1:
        raise ValueError(f"the student takes {student.in_channels} input channels; a package holds a slice between "
                         "as many neighbours on either side (an odd number)")
    if not isinstance(normalization, NormalizationSpec):
        raise ValueError(f"normalization must be a NormalizationSpec, got {type(normalization).__name__}")
    if normalization.mode == "percentile" and normalization.resolved:
        raise ValueError("normalization holds one image's statistics (a resolved spec); pass the spec training used")


def write_student_package(
    folder: str | Path,
    *,
    student: nn.Module,
    labels: LabelTable,
    input_size: int,
    slice_axis: int,
    normalization: NormalizationSpec,
    teacher_info: Mapping[str, Any] | None,
    metrics: Mapping[str, Any] | None,
    verify_inputs: np.ndarray | torch.Tensor | None = None,
) -> Path:
    """Write a complete student package folder (atomically: it replaces ``folder`` when done).

    Args:
        folder: the package folder to create (e.g. ``RUN/package``); replaced if it exists.
        student: the trained :class:`~tskd.student.StudentModel` (a wrapper with a projector or
            DDP is unwrapped); not modified.
        labels: the label table; channel ``c`` of the logits is ``labels.labels[c]`` (values ascending).
        input_size: S, the student's input size.
        slice_axis: numpy axis of the ``(k, j, i)`` volumes the student was trained on.
        normalization: the (unresolved) spec training used.
        teacher_info: ``architecture``, ``base``, ``base_sha256``, ``has_foundation_weights`` (extra
            keys are kept); None when no teacher was used.
        metrics: validation metrics (JSON-safe; NaN becomes null).
        verify_inputs: ``(B, C, S, S)`` normalised (stacked) slices for the ONNX check (real validation
            slices when available); default :func:`verification_inputs`.

    Returns:
        The package folder.

    Raises:
        OnnxVerificationError: onnxruntime does not reproduce torch (nothing is written).
    """
    net = unwrap_student(student)
    _check_arguments(net, labels, int(input_size), slice_axis, normalization)
    context = (int(net.in_channels) - 1) // 2  # a slice between c neighbours on either side: 2c + 1 channels
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    os.chmod(work, 0o755)  # mkdtemp makes it private; the package is an ordinary folder
    try:
        onnx_path = export_onnx(net, work / ONNX_NAME, input_size=input_size, num_classes=net.num_classes, opset=OPSET)
        real = verify_inputs is not None
        inputs = verify_inputs if real else np.repeat(verification_inputs(input_size), net.in_channels, axis=1)
        check = verify_onnx(net, onnx_path, inputs)
        state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        torch.save({"format": WEIGHTS_FORMAT, "spec": net.spec(), "state_dict": state}, work / TORCH_NAME)
        metadata = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION if context else FORMAT_VERSION_SINGLE_SLICE,
            "tskd_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "labels": [
                {"value": label.value, "name": label.name, "color": [round(float(c), 6) for c in label.display_color]}
                for label in labels
            ],
            "input": {"size": int(input_size), "slice_axis": int(slice_axis), "normalization": normalization.to_dict(),
                      **({"context_slices": context} if context else {})},
            "student": {"architecture": net.name, "parameters": count_parameters(net), "spec": net.spec()},
            "teacher": _teacher_entry(teacher_info),
            "metrics": _json_safe(dict(metrics or {}), "metrics"),
            "onnx": {
                "opset": OPSET,
                "input_name": INPUT_NAME,
                "output_name": OUTPUT_NAME,
                "argmax_agreement": check["argmax_agreement"],
                "max_abs_diff": check["max_abs_diff"],
                "verified_on": "validation slices" if real else "seeded random and structured inputs",
                "verified_pixels": int(check["pixels"]),
            },
        }
        (work / METADATA_NAME).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        StudentPackage.load(work)  # what we wrote must load
        replace_folder(work, folder)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    logger.info("wrote student package %s (%s, %d classes, ONNX agreement %.6f)", folder, net.name,
                net.num_classes, check["argmax_agreement"])
    return folder


def zip_package(folder: str | Path, path: str | Path | None = None) -> Path:
    """Zip a package folder into ``<name>.tskd.zip`` (files at the top of the zip), atomically.

    Args:
        folder: a package folder, or a run folder holding ``package/``.
        path: the zip to write; default next to the package folder, named after it (after the
            run folder when the package folder is called ``package``).

    Returns:
        The zip written.
    """
    package = StudentPackage.load(folder)  # refuse to zip something that is not a package
    source = package.folder
    if path is None:
        name = source.parent.name if source.name == "package" and source.parent.name else source.name
        path = source.parent / f"{name}{PACKAGE_SUFFIX}"
    path = Path(path)
    if not path.name.lower().endswith(PACKAGE_SUFFIX):
        raise ValueError(f"{path}: a student package zip must end with {PACKAGE_SUFFIX}")
    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith(".")):
                archive.write(file, arcname=file.name)

    atomic_write(path, write)
    logger.info("zipped %s into %s", source, path)
    return path


def load_torch_student(package: StudentPackage | str | Path, device: str | torch.device = "cpu") -> StudentModel:
    """Rebuild the torch student of a package from its ``student.pt`` (in eval mode).

    Raises:
        CheckpointError: the package has no ``student.pt`` or it does not fit the network.
    """
    package = package if isinstance(package, StudentPackage) else StudentPackage.load(package)
    path = package.torch_path
    if path is None:
        raise CheckpointError(f"{package.folder}: has no {TORCH_NAME}; use the ONNX backend, or export the package "
                              "again with its torch weights")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged files
        raise CheckpointError(f"{path}: cannot be read ({str(exc).splitlines()[0]}); export the package again") from None
    if not isinstance(data, dict) or data.get("format") != WEIGHTS_FORMAT:
        raise CheckpointError(f"{path}: not tskd student weights (format {data.get('format') if isinstance(data, dict) else None!r})")
    spec = dict(data["spec"])
    try:
        model = build_from_spec(spec)
        model.load_state_dict(data["state_dict"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: the weights do not fit the network they describe ({exc})") from None
    if model.num_classes != package.num_classes or model.input_size != package.input_size:
        raise CheckpointError(f"{path}: network ({model.num_classes} classes, input {model.input_size}) differs from "
                              f"{METADATA_NAME} ({package.num_classes} classes, input {package.input_size})")
    return model.to(device).eval()
