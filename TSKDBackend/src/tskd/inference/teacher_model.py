"""A trained teacher behind the runtime's ``SliceModel`` interface (``tskd teacher predict``)."""

from __future__ import annotations

import json
from pathlib import Path

from tskd.data.labels import LabelTable
from tskd.engine.device import inference_device
from tskd.errors import CheckpointError
from tskd.foundation.cache import embeddings_dir
from tskd.inference.torch_model import TorchSliceModel
from tskd.preprocess import NormalizationSpec
from tskd.teacher.box_teacher import box_prompted_teacher
from tskd.teacher.build import attach_embedding_cache
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
                             device: str = "auto", teaching: str | None = None,
                             embedding_cache: str | Path | None = "auto") -> TorchSliceModel:
    """The teacher of a run (or teacher folder), ready for :func:`tskd.runtime.segment_volume`.

    Args:
        path: run folder or teacher folder.
        base: the foundation checkpoint when it moved since training (its hash is checked).
        device: ``auto``, ``cpu`` or ``cuda``.
        teaching: ``"prompt_free"`` or ``"boxes"`` (see ``teacher.teaching``); None: as the run's
            teacher labelled its transfer set.
        embedding_cache: where a frozen foundation encoder's embeddings are kept
            (:mod:`tskd.teacher.embedding_cache`): ``"auto"`` as the run's ``teacher.embedding_cache``
            says (``$TSKD_HOME/embeddings`` by default), a folder, or None (encode every call). So a
            second ``tskd suggest`` or ``tskd teacher predict`` on the same images does not pay for the
            encoder again; a teacher whose encoder trained (LoRA, from scratch) has no cache.
    """
    folder = find_teacher_folder(path)
    preprocessing = folder / PREPROCESSING_JSON
    if not preprocessing.is_file():
        raise CheckpointError(f"{folder}: {PREPROCESSING_JSON} is missing; the teacher stage did not finish")
    info = json.loads(preprocessing.read_text(encoding="utf-8"))
    torch_device = inference_device(device)
    teacher = load_teacher(folder, base=base, device=torch_device).eval()
    trained_with = read_teacher_info(folder).get("config") or {}
    if embedding_cache == "auto":
        embedding_cache = trained_with.get("embedding_cache") or "auto"
    root = embeddings_dir(embedding_cache) if embedding_cache is not None else None
    attach_embedding_cache(teacher, root)  # nothing unless the encoder is a frozen foundation encoder
    if teaching is None:
        teaching = trained_with.get("teaching", "prompt_free")
    if teaching == "boxes":
        # how this run's teacher labelled its transfer set
        teacher = box_prompted_teacher(teacher, embedding_cache_root=root).eval()
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
