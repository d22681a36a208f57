"""Server-side prediction with a student package, for clients that cannot run the student.

The same code path as ``tskd predict`` and the Slicer module: :mod:`tskd.runtime` (normalise the
whole volume as training did, slice, resize, ONNX in batches, resize back, arg-max, label values).
The label map has the input's shape and geometry.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from tskd.data.image import Image
from tskd.runtime import OnnxSegmenter, StudentPackage, segment_volume

__all__ = ["StudentSessions", "segment_image"]


class StudentSessions:
    """A few loaded students (ONNX sessions are thread-safe), reloaded when the files change.

    Args:
        capacity: packages kept loaded.
        threads: onnxruntime threads per session (None: the runtime's default).
    """

    def __init__(self, capacity: int = 2, threads: int | None = None) -> None:
        self.capacity = capacity
        self.threads = threads
        self._loaded: OrderedDict[tuple[str, int], OnnxSegmenter] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, package: Path) -> OnnxSegmenter:
        key = (str(package), (package / "model.onnx").stat().st_mtime_ns)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            loaded = OnnxSegmenter(StudentPackage.load(package), threads=self.threads)
            self._loaded[key] = loaded
            while len(self._loaded) > self.capacity:
                self._loaded.popitem(last=False)
            return loaded


def segment_image(student: OnnxSegmenter, image: Image, *, batch_size: int = 16, roi=None) -> Image:
    """The label map of ``image`` (2D or 3D, with geometry) predicted by a loaded student.

    Args:
        roi: numpy index bounds (see :func:`tskd.runtime.segment_volume`): only that box is
            segmented (cropped, then each slice resized like the whole image would be), the rest is 0.
    """
    if image.array.ndim not in (2, 3):
        raise ValueError(f"expected a 2D or 3D image, got shape {image.array.shape}")
    return image.with_array(segment_volume(student, image.array, batch_size=batch_size, roi=roi))
