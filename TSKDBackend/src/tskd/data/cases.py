"""The records a dataset is made of: cases and the problems found while reading them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Case", "Problem", "ERROR", "WARNING", "message_without_path"]

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Case:
    """One image, with its label map when it has one.

    Args:
        case_id: unique name of the case in its dataset (the image name without suffix).
        subject_id: the person the image comes from; splits never put one subject on both sides.
        image_path: image file or DICOM series folder.
        label_path: label file, or None for an unlabelled image.
        spacing_override: voxel size to use instead of the file's (ITK ``(i, j, k)`` order), e.g.
            the pixel size of a PNG from a CSV; None to keep the file's.
    """

    case_id: str
    subject_id: str
    image_path: Path
    label_path: Path | None = None
    spacing_override: tuple[float, ...] | None = None

    @property
    def labelled(self) -> bool:
        return self.label_path is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "subject_id": self.subject_id,
            "image": str(self.image_path),
            "label": str(self.label_path) if self.label_path else None,
            "spacing_override": list(self.spacing_override) if self.spacing_override else None,
        }


@dataclass(frozen=True)
class Problem:
    """Something found wrong or odd in a dataset.

    Args:
        severity: ``"error"`` (the file or case cannot be used and was left out) or ``"warning"``
            (something was skipped or assumed; every usable case is still used).
        path: the file or folder concerned.
        message: what is wrong and what to do.
        case_id: the case it concerns, when there is one.
    """

    severity: str
    path: Path | None
    message: str
    case_id: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in (ERROR, WARNING):
            raise ValueError(f"severity must be 'error' or 'warning', got {self.severity!r}")

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.severity}: {where}{self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "path": str(self.path) if self.path else None,
                "message": self.message, "case_id": self.case_id}


def message_without_path(message: str, path: Path | None) -> str:
    """``message`` without a leading ``"<path>: "`` (for problems that carry the path separately)."""
    prefix = f"{path}: "
    return message[len(prefix):] if path is not None and message.startswith(prefix) else message
