"""Server-side prediction with a student package, for clients that cannot run the student.

Repeats training's preprocessing exactly, with the numpy-only functions of :mod:`tskd.preprocess`
(the ones the Slicer module uses too): normalise the whole volume with the package's spec, cut
2D slices along its slice axis, resize each to S x S, run the ONNX model in batches, resize the
logits back, take the arg-max and map channels to label values. The label map has the input's
shape and geometry.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from tskd.data.image import Image
from tskd.preprocess import NormalizationSpec, apply_normalization, resize_bilinear, slices_along, stack_slices

__all__ = ["LoadedStudent", "StudentSessions", "segment_image"]

logger = logging.getLogger(__name__)


class LoadedStudent:
    """A student package read for inference: its metadata and an onnxruntime session.

    Args:
        package: the package folder (``model.onnx`` + ``tskd-model.json``).
    """

    def __init__(self, package: Path) -> None:
        import onnxruntime as ort

        self.metadata: dict[str, Any] = json.loads((package / "tskd-model.json").read_text(encoding="utf-8"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
        self.session = ort.InferenceSession(str(package / "model.onnx"), sess_options=options,
                                            providers=["CPUExecutionProvider"])
        onnx_info = self.metadata.get("onnx") or {}
        self.input_name = onnx_info.get("input_name") or self.session.get_inputs()[0].name
        self.output_name = onnx_info.get("output_name") or self.session.get_outputs()[0].name
        spec = self.metadata["input"]
        self.size = int(spec["size"])
        self.slice_axis = int(spec.get("slice_axis", 0))
        self.normalization = NormalizationSpec.from_dict(dict(spec["normalization"]))
        self.values = np.asarray([int(item["value"]) for item in self.metadata["labels"]])


class StudentSessions:
    """A few loaded students (ONNX sessions are thread-safe), reloaded when the files change.

    Args:
        capacity: packages kept loaded.
    """

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = capacity
        self._loaded: OrderedDict[tuple[str, int], LoadedStudent] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, package: Path) -> LoadedStudent:
        key = (str(package), (package / "model.onnx").stat().st_mtime_ns)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            loaded = LoadedStudent(package)
            self._loaded[key] = loaded
            while len(self._loaded) > self.capacity:
                self._loaded.popitem(last=False)
            return loaded


def segment_image(student: LoadedStudent, image: Image, *, batch_size: int = 16) -> Image:
    """The label map of ``image`` predicted by a loaded student.

    Args:
        student: from :meth:`StudentSessions.get`.
        image: a 2D ``(j, i)`` or 3D ``(k, j, i)`` image with its geometry.
        batch_size: slices per ONNX call.

    Returns:
        A label :class:`Image` with the input's shape and geometry (uint8, or uint16 for values > 255).
    """
    if image.array.ndim not in (2, 3):
        raise ValueError(f"expected a 2D or 3D image, got shape {image.array.shape}")
    normalised = apply_normalization(image.array, student.normalization)
    slices = slices_along(normalised, student.slice_axis)
    count, height, width = slices.shape
    dtype = np.uint8 if student.values.max() <= 255 else np.uint16
    out = np.empty((count, height, width), dtype=dtype)
    for start in range(0, count, batch_size):
        batch = resize_bilinear(slices[start : start + batch_size], (student.size, student.size))[:, None]
        logits = student.session.run([student.output_name], {student.input_name: batch})[0]
        if logits.shape[1] != len(student.values):
            raise ValueError(f"the model gives {logits.shape[1]} channels but its package declares "
                             f"{len(student.values)} labels")
        logits = resize_bilinear(logits, (height, width))
        out[start : start + batch_size] = student.values[np.argmax(logits, axis=1)]
    return image.with_array(stack_slices(out, student.slice_axis, image.array.shape))
