"""Synthesis stage: train a diffusion model on every training image of the task (labelled and
unlabelled), or load a user's pretrained diffusers pipeline, and save it to ``RUN/synthesis/``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tskd.atomic import write_json
from tskd.data.slice_dataset import SliceDataset
from tskd.engine import on_main
from tskd.runconfig import PipelineConfig
from tskd.pipeline.data_stage import PreparedData
from tskd.pipeline.run_folder import RunFolder, read_json
from tskd.pipeline.stage import StageContext, fit_stage, stage_done

if TYPE_CHECKING:  # diffusers is imported only when synthesis is enabled (about 1 s of CPU per process)
    from tskd.synthesis.model import DiffusionModel

__all__ = ["run_synthesis_stage", "load_synthesis_model"]

logger = logging.getLogger(__name__)


def _val_batch(data: PreparedData, count: int) -> dict[str, Any] | None:
    """A fixed batch of validation slices for the diffusion model's cheap validation loss."""
    if count < 1 or data.val.size == 0:
        return None
    chosen = data.val[np.linspace(0, data.val.size - 1, min(count, data.val.size)).astype(int)]
    items = [SliceDataset(data.prepared, chosen)[i] for i in range(len(chosen))]
    return {
        "image": torch.stack([item["image"] for item in items]),
        "label": torch.stack([item["label"] for item in items]),
        "labelled": torch.stack([item["labelled"] for item in items]),
    }


def load_synthesis_model(run: RunFolder, config: PipelineConfig) -> DiffusionModel | None:
    """The stage's diffusion model of a finished stage, or None when synthesis is disabled."""
    if not config.synthesis.enabled:
        return None
    from tskd.synthesis.pretrained import load_pretrained_pipeline
    from tskd.synthesis.storage import load_diffusion_model

    summary = read_json(run.synthesis / "stage.json")
    if summary.get("pretrained"):
        return load_pretrained_pipeline(summary["pretrained"], config=config.synthesis)
    return load_diffusion_model(run.synthesis / "model")


def run_synthesis_stage(run: RunFolder, data: PreparedData, config: PipelineConfig,
                        context: StageContext) -> DiffusionModel | None:
    """Train (or load) the diffusion model; None when ``synthesis.enabled`` is false."""
    cfg = config.synthesis
    if not cfg.enabled:
        logger.info("synthesis: disabled; the transfer set will hold real images only")
        return None
    from tskd.synthesis.model import build_diffusion_model
    from tskd.synthesis.pretrained import load_pretrained_pipeline
    from tskd.synthesis.storage import save_diffusion_model
    from tskd.synthesis.task import DiffusionTask

    folder = run.synthesis
    if stage_done(folder):
        return load_synthesis_model(run, config)
    if cfg.pretrained:
        model = load_pretrained_pipeline(cfg.pretrained, config=cfg)
        logger.info("synthesis: using the pretrained diffusion pipeline %s (no training)", cfg.pretrained)
        on_main(write_json, folder / "stage.json", {"pretrained": str(cfg.pretrained), "model_id": model.model_id})
        return model

    joint = cfg.mode == "joint"
    indices = data.train_labelled if joint else np.concatenate([data.train_labelled, data.train_unlabelled])
    torch.manual_seed(cfg.train.seed)
    model = build_diffusion_model(cfg, num_classes=data.num_classes if joint else None)
    logger.info(
        "synthesis: training a %dx%d diffusion model (%s mode) on %d slices, %s parameters",
        cfg.image_size, cfg.image_size, cfg.mode, indices.size, f"{sum(p.numel() for p in model.unet.parameters()):,}",
    )
    model.data_fingerprint = data.prepared.fingerprint
    fit_stage(
        folder=folder, stage="synthesis", model=model.unet,
        task=DiffusionTask.for_model(model, val_batch=_val_batch(data, cfg.val_images)),
        dataset=SliceDataset(data.prepared, indices), train=cfg.train, context=context,
        fingerprint={"synthesis": cfg.to_dict(), "prepared": data.prepared.fingerprint, "split": data.split},
        save=lambda unet: save_diffusion_model(model, folder / "model"),
        summary=lambda: {"model_id": model.model_id},
        keep_best=False,  # the last weights, as before: its validation loss is a noisy, cheap check
    )
    return model
