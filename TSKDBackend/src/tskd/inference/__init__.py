"""Inference on image files: the runtime's slice-by-slice segmentation plus the data layer's readers
and writers (``tskd predict``), and a torch adapter so torch models segment like the ONNX student.

Imports torch only when a torch model is asked for; :mod:`tskd.runtime` stays torch-free.
"""

from __future__ import annotations

from tskd.inference.predict import (
    FORMATS,
    PredictionResult,
    list_inputs,
    load_slice_model,
    output_path_for,
    parse_roi,
    predict_files,
)

__all__ = [
    "FORMATS",
    "PredictionResult",
    "list_inputs",
    "load_slice_model",
    "output_path_for",
    "parse_roi",
    "predict_files",
]
