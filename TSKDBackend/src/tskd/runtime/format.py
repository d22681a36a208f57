"""The names of the student package format (``docs/student-package.md``) and its error: the floor
that :mod:`.package` (loading and checking a package) and :mod:`.archive` (unpacking a
``.tskd.zip``) both stand on, so that neither imports the other back.

Standard library only, Python 3.9 syntax: shipped into Slicer.
"""

from __future__ import annotations

import os
from typing import Union

from ..errors import CheckpointError

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "FORMAT_VERSION_SINGLE_SLICE", "METADATA_NAME", "ONNX_NAME",
           "TORCH_NAME", "PACKAGE_SUFFIX", "PackageError", "PathLike"]

FORMAT_NAME = "tskd-student"
#: The newest package format this tskd reads. 2 adds ``input.context_slices`` (a student that sees each
#: slice between its neighbours); packages without neighbours are still written as 1, which every tskd
#: reads, and a tskd that knows only 1 refuses a 2 with "update tskd" instead of feeding it single slices.
FORMAT_VERSION = 2
#: The version of a package whose student sees single slices.
FORMAT_VERSION_SINGLE_SLICE = 1
METADATA_NAME = "tskd-model.json"
ONNX_NAME = "model.onnx"
TORCH_NAME = "student.pt"
PACKAGE_SUFFIX = ".tskd.zip"
PathLike = Union[str, "os.PathLike[str]"]


class PackageError(CheckpointError):
    """A student package is missing, damaged, or not one (the message names the file and field)."""
