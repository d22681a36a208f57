"""Segmentation metrics in physical units on full-resolution label maps: the project's Dice
(:func:`tskd.metrics.mask_dice`, the same rule as the training stages' validation Dice) and MONAI's
surface distances.

Conventions for classes missing from one side (the usual ones in the field):
- absent from both prediction and reference: Dice 1, HD95 0 mm, ASSD 0 mm (nothing to find, nothing found);
- present on one side only: Dice 0, HD95 and ASSD undefined (NaN), counted in ``n_undefined``.
Means over cases ignore NaN.
"""

from __future__ import annotations

import math
import warnings
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
    """HD95 and symmetric ASSD (mm) of two non-empty masks, from ONE pair of distance transforms.

    MONAI's ``compute_hausdorff_distance(percentile=95)`` and ``compute_average_surface_distance(symmetric=True)``
    each compute the same edge-to-edge distances in both directions (two Euclidean distance transforms of the
    whole volume); this computes them once and takes both numbers from them exactly as those functions do
    (monai/metrics/hausdorff_distance.py, surface_distance.py: the larger of the two directions' 95th
    percentiles; the mean of both directions' distances; float32 results).
    """
    from monai.metrics.utils import get_edge_surface_distance  # lazy: MONAI takes seconds to import

    with warnings.catch_warnings():  # MONAI warns about its own internal use of a deprecated argument
        warnings.simplefilter("ignore", FutureWarning)
        _, distances, _ = get_edge_surface_distance(
            pred.float(), ref.float(), distance_metric="euclidean", spacing=[float(s) for s in spacing],
            symmetric=True)
    hd95 = torch.max(torch.stack([torch.quantile(d, 0.95) for d in distances]))
    assd = torch.cat(distances).mean()
    return float(hd95.to(torch.float32).item()), float(assd.to(torch.float32).item())


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
