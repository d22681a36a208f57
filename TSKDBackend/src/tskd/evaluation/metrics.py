"""Segmentation metrics in physical units on full-resolution label maps: the project's Dice
(:func:`tskd.metrics.mask_dice`, the same rule as the training stages' validation Dice) and the
surface distances HD95 and ASSD as MONAI computes them (without importing MONAI).

Conventions for classes missing from one side (the usual ones in the field):
- absent from both prediction and reference: Dice 1, HD95 0 mm, ASSD 0 mm (nothing to find, nothing found);
- present on one side only: Dice 0, HD95 and ASSD undefined (NaN), counted in ``n_undefined``.
Means over cases ignore NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch

from tskd.metrics import mask_dice

__all__ = ["CaseMetrics", "case_metrics", "summarize_metrics"]


@dataclass
class CaseMetrics:
    """Per-class metrics of one case (keys are label values)."""

    case_id: str
    dice: dict[int, float] = field(default_factory=dict)
    hd95_mm: dict[int, float] = field(default_factory=dict)
    assd_mm: dict[int, float] = field(default_factory=dict)

    @property
    def mean_dice(self) -> float:
        return _nanmean(self.dice.values())

    def to_dict(self) -> dict:
        return {
            "case_id": self.case_id,
            "dice": {str(k): v for k, v in self.dice.items()},
            "hd95_mm": {str(k): v for k, v in self.hd95_mm.items()},
            "assd_mm": {str(k): v for k, v in self.assd_mm.items()},
            "mean_dice": self.mean_dice,
        }


def _nanmean(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def case_metrics(
    prediction: np.ndarray,
    reference: np.ndarray,
    *,
    labels: Sequence[int],
    spacing: Sequence[float],
    case_id: str = "",
    surface: bool = True,
) -> CaseMetrics:
    """Dice, HD95 and ASSD (mm) per foreground label.

    Args:
        prediction, reference: integer label maps of the same shape (numpy order, 2D or 3D).
        labels: foreground label values to evaluate (background 0 is never scored).
        spacing: voxel size per *numpy axis* (i.e. reversed ITK spacing), in mm.
        surface: also compute the surface distances (slower on large volumes).
    """
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from reference shape {reference.shape}")
    if len(spacing) != prediction.ndim:
        raise ValueError(f"spacing has {len(spacing)} values for a {prediction.ndim}-D label map")
    result = CaseMetrics(case_id=case_id)
    for label in labels:
        if label == 0:
            continue
        pred = torch.from_numpy(np.ascontiguousarray(prediction == label))[None, None]
        ref = torch.from_numpy(np.ascontiguousarray(reference == label))[None, None]
        has_pred, has_ref = bool(pred.any()), bool(ref.any())
        result.dice[label] = mask_dice(pred, ref)
        if not has_pred and not has_ref:
            result.hd95_mm[label] = result.assd_mm[label] = 0.0
            continue
        if not (has_pred and has_ref):
            result.hd95_mm[label] = result.assd_mm[label] = float("nan")
            continue
        if surface:
            result.hd95_mm[label], result.assd_mm[label] = _surface_distances(pred[0, 0], ref[0, 0], spacing)
    return result


def _surface_distances(pred: torch.Tensor, ref: torch.Tensor, spacing: Sequence[float]) -> tuple[float, float]:
    """HD95 and symmetric ASSD (mm) of two non-empty masks, from one pair of edge-to-edge distance sets.

    The numbers are MONAI 1.6.1's ``compute_hausdorff_distance(percentile=95)`` and
    ``compute_average_surface_distance(symmetric=True)`` (monai/metrics/hausdorff_distance.py,
    surface_distance.py: the larger of the two directions' 95th percentiles; the mean of both
    directions' distances), computed as their ``get_edge_surface_distance`` does
    (monai/metrics/utils.py, ``get_mask_edges`` and ``get_surface_distance``) but without importing
    MONAI (seconds per process): both masks cropped to their union's bounding box with a margin of
    one voxel (zero-padded where it leaves the image), edges = mask XOR its binary erosion (scipy's
    default cross-shaped structure, outside = background), then for each edge voxel of one mask the
    Euclidean distance in mm to the nearest edge voxel of the other, from a KD-tree over the
    cropped-frame voxel coordinates times the spacing (float64, kept as float32). The same
    coordinates, tree and float types give the same numbers bit for bit
    (tests/evaluation/test_surface_distance_parity.py compares them on random masks).
    """
    from scipy.ndimage import binary_erosion  # lazy: scipy is only needed for the surface distances
    from scipy.spatial import KDTree

    pred_edges, ref_edges = (mask ^ binary_erosion(mask) for mask in _union_box(pred.numpy(), ref.numpy()))
    scale = np.asarray([float(s) for s in spacing], dtype=np.float64)
    pred_points = np.argwhere(pred_edges).astype(np.float64) * scale
    ref_points = np.argwhere(ref_edges).astype(np.float64) * scale
    distances = [torch.as_tensor(KDTree(to, leafsize=32).query(points, k=1)[0], dtype=torch.float32)
                 for points, to in ((pred_points, ref_points), (ref_points, pred_points))]
    hd95 = torch.max(torch.stack([torch.quantile(d, 0.95) for d in distances]))
    assd = torch.cat(distances).mean()
    return float(hd95.item()), float(assd.item())


def _union_box(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both boolean masks cropped to the bounding box of ``pred | ref`` grown by one voxel on every
    side, zero-padded where that box leaves the image (MONAI's ``CropForegroundd(margin=1,
    allow_smaller=False)`` in ``get_mask_edges``)."""
    union = pred | ref
    slices, padding = [], []
    for axis, size in enumerate(union.shape):
        present = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != axis)))
        start, stop = int(present[0]) - 1, int(present[-1]) + 2
        slices.append(slice(max(start, 0), min(stop, size)))
        padding.append((max(-start, 0), max(stop - size, 0)))
    return np.pad(pred[tuple(slices)], padding), np.pad(ref[tuple(slices)], padding)


def summarize_metrics(cases: Sequence[CaseMetrics], label_names: dict[int, str] | None = None) -> dict:
    """Mean of each metric per class and over classes; NaN-aware, with counts of undefined values."""
    labels = sorted({label for case in cases for label in case.dice})
    names = label_names or {}
    per_class = {}
    for label in labels:
        entry = {"name": names.get(label, f"label_{label}")}
        for metric in ("dice", "hd95_mm", "assd_mm"):
            values = [getattr(case, metric).get(label, float("nan")) for case in cases]
            entry[metric] = _nanmean(values)
            entry[f"{metric}_n_undefined"] = int(sum(math.isnan(v) for v in values))
        per_class[str(label)] = entry
    return {
        "n_cases": len(cases),
        "per_class": per_class,
        "mean_dice": _nanmean(entry["dice"] for entry in per_class.values()),
        "mean_hd95_mm": _nanmean(entry["hd95_mm"] for entry in per_class.values()),
        "mean_assd_mm": _nanmean(entry["assd_mm"] for entry in per_class.values()),
    }
