"""Writing a volume's voxels to an NRRD file off the GUI thread (numpy and zlib only; no VTK, no scene).

Slicer's own writer (``vtkMRMLVolumeArchetypeStorageNode``) works on a node of the scene, so it
runs on the GUI thread, and gzip-compressing a large CT there freezes Slicer for seconds (issue 14,
item 7). Here the GUI thread only takes a :class:`VolumeSnapshot` (a copy of the voxels and the
IJK-to-RAS matrix, see :func:`SlicerTSKDLib.sceneData.volumeSnapshot`) and a worker thread writes
it with :func:`writeNrrd`, the way Slicer writes it: ``space: left-posterior-superior``, the
IJK-to-LPS columns as ``space directions``, gzip encoding. The file appears complete or not at
all (written to ``<path>.part``, then renamed).
"""

from __future__ import annotations

import os
import zlib
from typing import Callable, Optional

import numpy as np

__all__ = ["VolumeSnapshot", "writeNrrd", "NRRD_TYPES", "WriteCancelled"]

#: numpy dtype -> NRRD type name.
NRRD_TYPES = {
    "int8": "signed char", "uint8": "uchar", "int16": "short", "uint16": "ushort", "int32": "int",
    "uint32": "uint", "int64": "longlong", "uint64": "ulonglong", "float32": "float", "float64": "double",
}

_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])
_CHUNK = 4 << 20  # bytes compressed between progress reports


class WriteCancelled(Exception):
    """The write was cancelled; no file was left behind."""


class VolumeSnapshot:
    """Voxels ``(k, j, i)`` and their IJK-to-RAS matrix, taken on the GUI thread, safe to hand to a worker.

    Args:
        array: the voxels (copied unless ``copy=False``, when the caller already made a copy).
        ijkToRas: 4x4 matrix.
        name: for messages.
    """

    def __init__(self, array: np.ndarray, ijkToRas: np.ndarray, name: str = "", copy: bool = True) -> None:
        array = np.array(array, copy=True) if copy else np.asarray(array)
        if array.ndim != 3:
            raise ValueError("a volume snapshot needs a (k, j, i) array, got shape {}".format(array.shape))
        if array.dtype.name not in NRRD_TYPES:
            raise ValueError("voxels of type {} cannot be written to NRRD".format(array.dtype))
        self.array = array
        self.ijkToRas = np.array(ijkToRas, dtype=float, copy=True).reshape(4, 4)
        self.name = name

    def withArray(self, array: np.ndarray, copy: bool = True) -> "VolumeSnapshot":
        """Another array on the same grid (a label map of this volume)."""
        if tuple(np.shape(array)) != tuple(self.array.shape):
            raise ValueError("the array has shape {} but the volume has {}".format(np.shape(array), self.array.shape))
        return VolumeSnapshot(array, self.ijkToRas, self.name, copy=copy)


def nrrdHeader(snapshot: VolumeSnapshot, compress: bool = True) -> str:
    array = snapshot.array
    lps = _LPS_FROM_RAS @ snapshot.ijkToRas[:3, :3]
    origin = _LPS_FROM_RAS @ snapshot.ijkToRas[:3, 3]

    def vector(values) -> str:
        return "(" + ",".join(repr(float(value)) for value in values) + ")"

    return "".join([
        "NRRD0004\n",
        "# Written by SlicerTSKD (volumeFiles.writeNrrd)\n",
        "type: {}\n".format(NRRD_TYPES[array.dtype.name]),
        "dimension: 3\n",
        "space: left-posterior-superior\n",
        "sizes: {} {} {}\n".format(array.shape[2], array.shape[1], array.shape[0]),
        "space directions: {} {} {}\n".format(vector(lps[:, 0]), vector(lps[:, 1]), vector(lps[:, 2])),
        "kinds: domain domain domain\n",
        "endian: little\n",
        "encoding: {}\n".format("gzip" if compress else "raw"),
        "space origin: {}\n".format(vector(origin)),
        "\n",
    ])


def writeNrrd(snapshot: VolumeSnapshot, path: str, compress: bool = True,
              progress: Optional[Callable[[float], None]] = None,
              cancel: Optional[Callable[[], bool]] = None) -> str:
    """Write ``snapshot`` to ``path`` (any thread); returns the path.

    Args:
        compress: gzip encoding (as Slicer writes), else raw.
        progress: called with the fraction written (0..1), from the writing thread.
        cancel: polled between chunks; True stops the write (:class:`WriteCancelled`, no file left).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    data = np.ascontiguousarray(snapshot.array, dtype=snapshot.array.dtype.newbyteorder("<"))
    raw = memoryview(data.reshape(-1).view(np.uint8))
    total = len(raw)
    partial = path + ".part"
    try:
        with open(partial, "wb") as stream:
            stream.write(nrrdHeader(snapshot, compress).encode("ascii"))
            compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS) if compress else None  # gzip stream
            for start in range(0, max(total, 1), _CHUNK):
                if cancel is not None and cancel():
                    raise WriteCancelled("writing {} was cancelled".format(path))
                chunk = raw[start:start + _CHUNK]
                stream.write(compressor.compress(chunk) if compressor is not None else chunk)
                if progress is not None:
                    progress(min(1.0, (start + len(chunk)) / float(max(total, 1))))
            if compressor is not None:
                stream.write(compressor.flush())
        os.replace(partial, path)
    except BaseException:
        try:
            os.remove(partial)
        except OSError:
            pass
        raise
    return path
