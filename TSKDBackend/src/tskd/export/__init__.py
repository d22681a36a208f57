"""Exporting trained students: ONNX graphs and the student package (``docs/student-package.md``)."""

from __future__ import annotations

from tskd.export.onnx_export import OnnxVerificationError, export_onnx, verify_onnx
from tskd.export.package import (
    load_torch_student,
    verification_inputs,
    write_student_package,
    zip_package,
)

__all__ = [
    "export_onnx",
    "verify_onnx",
    "OnnxVerificationError",
    "write_student_package",
    "zip_package",
    "load_torch_student",
    "verification_inputs",
]
