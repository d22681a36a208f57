"""Inference with a student package: numpy + onnxruntime, Python 3.9, also shipped into Slicer.

* :class:`StudentPackage` - load and validate a package folder, ``.tskd.zip`` or run folder;
* :class:`OnnxSegmenter` - the package's ONNX model on onnxruntime (CPU by default);
* :class:`OnnxBoxPredictor` - box-to-mask with an exported SAM-family model (LiteMedSAM);
* :func:`segment_volume` / :class:`VolumeSegmenter` - slice-by-slice segmentation of a volume with
  any :class:`SliceModel` (the ONNX student, a torch student, the teacher), repeating training's
  preprocessing exactly, then the package's post-processing (:mod:`.postprocess`, scipy when used).

Imports only the standard library, numpy, onnxruntime (when a session is made),
:mod:`tskd.preprocess` and :mod:`tskd.errors` (relative imports, so the three packages can be
shipped together under another name).
"""

from __future__ import annotations

from .archive import MAX_UNPACKED_BYTES, unpack_zip
from .box_model import BoxModelInfo, OnnxBoxPredictor, find_box_model, unpack_box_model
from .inference import (
    SliceModel,
    VolumeSegmenter,
    effective_axis,
    label_dtype,
    resolve_roi,
    segment_volume,
)
from .package import (
    FORMAT_NAME,
    FORMAT_VERSION,
    METADATA_NAME,
    ONNX_NAME,
    PACKAGE_SUFFIX,
    TORCH_NAME,
    PackageError,
    PackageLabel,
    StudentPackage,
    find_package_folder,
)
from .postprocess import POSTPROCESSING_METHODS, apply_postprocessing
from .session import OnnxSegmenter, default_threads, physical_cores, resolve_providers

__all__ = [
    "BoxModelInfo",
    "OnnxBoxPredictor",
    "find_box_model",
    "unpack_box_model",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "METADATA_NAME",
    "ONNX_NAME",
    "PACKAGE_SUFFIX",
    "TORCH_NAME",
    "PackageError",
    "PackageLabel",
    "StudentPackage",
    "find_package_folder",
    "unpack_zip",
    "MAX_UNPACKED_BYTES",
    "OnnxSegmenter",
    "physical_cores",
    "default_threads",
    "resolve_providers",
    "SliceModel",
    "VolumeSegmenter",
    "segment_volume",
    "resolve_roi",
    "effective_axis",
    "label_dtype",
    "POSTPROCESSING_METHODS",
    "apply_postprocessing",
]
