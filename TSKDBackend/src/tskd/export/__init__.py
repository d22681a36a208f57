"""Exporting trained students (ONNX graphs and the student package, ``docs/student-package.md``) and
SAM-family box models (encoder and decoder graphs, :mod:`tskd.export.box_export`)."""

from __future__ import annotations

from tskd.export.box_export import export_box_model, verify_box_model
from tskd.export.onnx_export import OnnxVerificationError, export_onnx, verify_onnx
from tskd.export.package import (
    load_torch_student,
    verification_inputs,
    write_student_package,
    zip_package,
)

__all__ = [
    "export_box_model",
    "verify_box_model",
    "export_onnx",
    "verify_onnx",
    "OnnxVerificationError",
    "write_student_package",
    "zip_package",
    "load_torch_student",
    "verification_inputs",
]
