"""Exporting trained students: ONNX graphs (the student package with metadata builds on this)."""

from __future__ import annotations

from tskd.export.onnx_export import OnnxVerificationError, export_onnx, verify_onnx

__all__ = ["export_onnx", "verify_onnx", "OnnxVerificationError"]
