"""A trained teacher behind the runtime's ``SliceModel`` interface (``tskd teacher predict``)."""

from __future__ import annotations

import json
from pathlib import Path

from tskd.data.labels import LabelTable
from tskd.engine.device import inference_device
from tskd.errors import CheckpointError
from tskd.inference.torch_model import TorchSliceModel
from tskd.preprocess import NormalizationSpec
from tskd.teacher.box_teacher import box_prompted_teacher
from tskd.teacher.storage import TEACHER_JSON, load_teacher, read_teacher_info

__all__ = ["load_teacher_slice_model", "find_teacher_folder"]

PREPROCESSING_JSON = "preprocessing.json"


def find_teacher_folder(path: str | Path) -> Path:
    """The teacher folder itself, or ``teacher/`` inside a run folder."""
    path = Path(path)
    for candidate in (path, path / "teacher"):
        if (candidate / TEACHER_JSON).is_file():
            return candidate
    raise CheckpointError(f"{path}: no trained teacher here (expected {TEACHER_JSON} in it or in its teacher/ folder)")


def load_teacher_slice_model(path: str | Path, *, base: str | Path | None = None,
                             device: str = "auto", teaching: str | None = None) -> TorchSliceModel:
    """The teacher of a run (or teacher folder), ready for :func:`tskd.runtime.segment_volume`.

    Args:
        path: run folder or teacher folder.
        base: the foundation checkpoint when it moved since training (its hash is checked).
        device: ``auto``, ``cpu`` or ``cuda``.
        teaching: ``"prompt_free"`` or ``"boxes"`` (see ``teacher.teaching``); None: as the run's
            teacher labelled its transfer set.
    """
    folder = find_teacher_folder(path)
    preprocessing = folder / PREPROCESSING_JSON
    if not preprocessing.is_file():
        raise CheckpointError(f"{folder}: {PREPROCESSING_JSON} is missing; the teacher stage did not finish")
    info = json.loads(preprocessing.read_text(encoding="utf-8"))
    torch_device = inference_device(device)
    teacher = load_teacher(folder, base=base, device=torch_device).eval()
    if teaching is None:
        teaching = (read_teacher_info(folder).get("config") or {}).get("teaching", "prompt_free")
    if teaching == "boxes":
        teacher = box_prompted_teacher(teacher).eval()  # how this run's teacher labelled its transfer set
    labels = LabelTable.from_dict(info["labels"])
    return TorchSliceModel(
        teacher,
        input_size=teacher.input_size,
        label_values=labels.values,
        normalization=NormalizationSpec.from_dict(info["normalization"]),
        slice_axis=int(info["slice_axis"]),
        device=torch_device,
        segments=[{"name": label.name, "label_value": label.value, "color": list(label.display_color)}
                  for label in labels if label.value != 0],
    )
