"""Generating synthetic images with a diffusion model into a folder (``tskd synth generate``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tskd.atomic import write_json
from tskd.data.image import Geometry, Image, write_image
from tskd.errors import CheckpointError
from tskd.progress import NullProgress, ProgressEvent, ProgressReporter
from tskd.synthesis.grid import save_grid
from tskd.synthesis.model import DiffusionModel
from tskd.synthesis.pretrained import load_pretrained_pipeline
from tskd.synthesis.sampler import iter_generate
from tskd.synthesis.storage import load_diffusion_model

__all__ = ["load_any_diffusion_model", "generate_to_folder", "real_images_near"]

logger = logging.getLogger(__name__)


def load_any_diffusion_model(path: str | Path) -> DiffusionModel:
    """A run folder, our saved model folder (``synthesis/model``), or a diffusers pipeline folder."""
    path = Path(path)
    for candidate in (path / "synthesis" / "model", path / "model", path):
        if (candidate / "diffusion.json").is_file():
            return load_diffusion_model(candidate)
    if (path / "model_index.json").is_file():
        return load_pretrained_pipeline(path)
    raise CheckpointError(
        f"{path}: no diffusion model here; give a run folder (tskd train / tskd synth train), its "
        "synthesis/model folder, or a diffusers pipeline folder with model_index.json"
    )


def real_images_near(path: str | Path, count: int = 8) -> np.ndarray | None:
    """Real training slices of the run folder that holds the model at ``path`` (for the grid)."""
    from tskd.data.slice_dataset import PreparedSlices

    path = Path(path)
    for root in (path, path.parent.parent):
        if (root / "prepared" / "index.json").is_file():
            prepared = PreparedSlices(root / "prepared")
            chosen = prepared.indices(labelled=True)
            if chosen.size == 0:
                return None
            chosen = chosen[np.linspace(0, chosen.size - 1, min(count, chosen.size)).astype(int)]
            return np.asarray(prepared.images[chosen], dtype=np.float32)
    return None


def generate_to_folder(
    model: DiffusionModel,
    n: int,
    out: str | Path,
    *,
    seed: int = 0,
    steps: int | None = None,
    sampler: str | None = None,
    device: str = "cpu",
    progress: ProgressReporter | None = None,
    real_images: np.ndarray | None = None,
) -> dict[str, Any]:
    """Write ``n`` images (``synthetic_<seed>.nii.gz``, normalised intensities; labels too in joint
    mode) and ``grid.png`` (beside ``real_images`` when given). Images already in ``out`` are kept,
    so an interrupted run resumes."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    report = progress or NullProgress()
    seeds = list(range(seed, seed + n))
    todo = [s for s in seeds if not (out / "images" / f"synthetic_{s:06d}.nii.gz").is_file()]
    if len(todo) < len(seeds):
        logger.info("generate: %d of %d images already in %s", len(seeds) - len(todo), n, out)
    done = n - len(todo)
    for batch in iter_generate(model, todo, steps=steps, sampler=sampler, device=device):
        for i, image_seed in enumerate(batch.seeds):
            image = batch.images[i, 0]
            if batch.labels is not None:
                label = batch.labels[i].astype(np.uint8)
                write_image(Image(label, Geometry.default(label.shape)), out / "labels" / f"synthetic_{image_seed:06d}.nii.gz")
            write_image(Image(image.astype(np.float32), Geometry.default(image.shape)),
                        out / "images" / f"synthetic_{image_seed:06d}.nii.gz")
        done += len(batch.seeds)
        report(ProgressEvent(stage="generate", step=done, total=n))
    images = np.stack([_read(out / "images" / f"synthetic_{s:06d}.nii.gz") for s in seeds[:16]])
    real = real_images[:8] if real_images is not None else np.zeros((0,) + images.shape[1:], np.float32)
    save_grid(real, images, out / "grid.png")
    summary = {"n": n, "seeds": [seeds[0], seeds[-1]], "model_id": model.model_id, "mode": model.config.mode}
    write_json(out / "generated.json", summary)
    return summary


def _read(path: Path) -> np.ndarray:
    from tskd.data.image import read_image

    return read_image(path).array
