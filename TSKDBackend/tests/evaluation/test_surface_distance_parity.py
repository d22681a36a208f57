"""HD95 and ASSD without MONAI (tskd.evaluation.metrics._surface_distances) against MONAI 1.6.1's
get_edge_surface_distance, as the project called it before, and its compute_hausdorff_distance /
compute_average_surface_distance: the same numbers, bit for bit, on random 2D and 3D masks with
anisotropic spacing, masks touching the image border, single voxels, full images and thin lines."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
from monai.metrics.utils import get_edge_surface_distance
from scipy import ndimage

from tskd.evaluation import case_metrics
from tskd.evaluation.metrics import _surface_distances


def _monai(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> tuple[float, float]:
    """What case_metrics computed with MONAI until it stopped importing it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _, distances, _ = get_edge_surface_distance(
            torch.from_numpy(pred).float(), torch.from_numpy(ref).float(), distance_metric="euclidean",
            spacing=[float(s) for s in spacing], symmetric=True)
    hd95 = torch.max(torch.stack([torch.quantile(d, 0.95) for d in distances]))
    assd = torch.cat(distances).mean()
    return float(hd95.to(torch.float32).item()), float(assd.to(torch.float32).item())


def _blobs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A random mask: smoothed noise thresholded at a random level (one to many blobs, some at the border)."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=rng.uniform(0.5, 3.0))
    return noise > np.quantile(noise, rng.uniform(0.5, 0.97))


def _special(shape: tuple[int, ...], kind: str, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros(shape, bool)
    if kind == "voxel":
        mask[tuple(rng.integers(0, n) for n in shape)] = True
    elif kind == "corner":
        mask[(0,) * len(shape)] = True
    elif kind == "full":
        mask[...] = True
    elif kind == "border":
        mask[(slice(None),) * (len(shape) - 1) + (slice(0, 2),)] = True
    elif kind == "line":
        mask[(rng.integers(0, shape[0]),) + (slice(None),) * (len(shape) - 1)] = True
    return mask


def _cases(dimension: int, count: int, seed: int):
    rng = np.random.default_rng(seed)
    kinds = ["voxel", "corner", "full", "border", "line"]
    for index in range(count):
        shape = tuple(int(n) for n in rng.integers(5, 40 if dimension == 3 else 90, size=dimension))
        spacing = tuple(float(s) for s in rng.choice([0.5, 0.7031, 0.8, 1.0, 1.3, 2.5, 3.0], size=dimension))
        masks = []
        for _ in range(2):
            if index % 3 == 2:  # a third of the pairs have a special mask on one or both sides
                masks.append(_special(shape, kinds[int(rng.integers(len(kinds)))], rng))
            else:
                masks.append(_blobs(rng, shape))
        if masks[0].any() and masks[1].any():
            yield masks[0], masks[1], spacing


@pytest.mark.parametrize("dimension", [2, 3])
def test_hd95_and_assd_are_monais_bit_for_bit(dimension):
    ours, theirs, pairs = [], [], 0
    for pred, ref, spacing in _cases(dimension, 90 if dimension == 2 else 45, seed=dimension):
        ours.append(_surface_distances(torch.from_numpy(pred), torch.from_numpy(ref), spacing))
        theirs.append(_monai(pred, ref, spacing))
        pairs += 1
    assert pairs > 35
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=0, atol=0)


def test_case_metrics_equal_monais_compute_functions_on_label_maps():
    """Through case_metrics (several labels, label maps, anisotropic 3D) against MONAI's two public
    metric functions."""
    from tskd.data.phantom import PhantomConfig, make_phantom

    config = PhantomConfig(size=(48, 40, 12))
    reference, prediction = make_phantom(config, 0)[1].array, make_phantom(config, 1)[1].array
    spacing = tuple(reversed(config.spacing))  # numpy order
    metrics = case_metrics(prediction, reference, labels=[1, 2, 3], spacing=spacing)
    for label in (1, 2, 3):
        pred = torch.from_numpy(prediction == label)[None, None]
        ref = torch.from_numpy(reference == label)[None, None]
        hd95 = compute_hausdorff_distance(pred, ref, include_background=True, percentile=95, spacing=list(spacing))
        assd = compute_average_surface_distance(pred, ref, include_background=True, symmetric=True,
                                                spacing=list(spacing))
        assert 0 < metrics.hd95_mm[label] == float(hd95.item())
        assert 0 < metrics.assd_mm[label] == float(assd.item())
