"""Loading a user-supplied, pretrained diffusion pipeline folder from disk.

Supported: unconditional pixel-space pipelines saved by ``diffusers`` (``DDPMPipeline``,
``DDIMPipeline``, ``save_pretrained`` output), that is a folder with ``model_index.json``, a
``unet/`` holding a ``UNet2DModel`` and a ``scheduler/`` config. Nothing is downloaded: only local
files are read. Latent or text-conditioned pipelines (Stable Diffusion: ``vae``, ``text_encoder``,
``UNet2DConditionModel``) are refused with a message saying so.

Channels: a 1-channel model makes grey images directly. A 3-channel (RGB) model is used as it is:
for training further, the grey image is repeated into the three channels; generated RGB images are
turned to grey by averaging their channels. Other channel counts are refused. The model's own
scheduler settings (number of timesteps, betas, prediction type) are kept; its images are read in
the model range ``[-1, 1]`` through the usual clip-and-scale intensity mapping.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from diffusers import DDPMScheduler

from tskd.errors import CheckpointError, ConfigError
from tskd.synthesis.config import DiffusionConfig
from tskd.synthesis.intensity import IntensityMapping
from tskd.synthesis.model import DiffusionModel, plain_scheduler_config
from tskd.synthesis.storage import read_unet, weights_digest

__all__ = ["load_pretrained_pipeline"]

logger = logging.getLogger(__name__)

_LATENT_PARTS = ("vae", "vqvae", "text_encoder", "tokenizer")
_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def load_pretrained_pipeline(
    folder: str | Path,
    *,
    config: DiffusionConfig | None = None,
    device: str = "cpu",
) -> DiffusionModel:
    """A :class:`DiffusionModel` from a diffusers pipeline folder.

    Args:
        folder: the pipeline folder (``model_index.json``, ``unet/``, ``scheduler/``).
        config: settings not fixed by the model (sampler, sampling steps, intensity clip, training
            numbers for fine-tuning, quality gate); sizes, timesteps and prediction type are taken
            from the model. Default: :class:`DiffusionConfig` defaults.
        device: where to put the U-Net.

    Raises:
        CheckpointError: the folder is missing, incomplete, or holds an unsupported model.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: pretrained diffusion pipeline folder not found")
    index = _read_index(folder)
    latent = [part for part in _LATENT_PARTS if part in index]
    if latent:
        raise CheckpointError(
            f"{folder / 'model_index.json'}: a latent or text-conditioned pipeline (it has "
            f"{', '.join(latent)}); only unconditional pixel-space DDPM/DDIM pipelines are supported"
        )
    for part in ("unet", "scheduler"):
        if part not in index:
            raise CheckpointError(f"{folder / 'model_index.json'}: no '{part}' entry; the pipeline needs a unet and a scheduler")
    scheduler_path = folder / "scheduler" / "scheduler_config.json"
    if not scheduler_path.is_file():
        raise CheckpointError(f"{scheduler_path}: missing; copy the pipeline's scheduler/ folder too")
    try:
        raw = json.loads(scheduler_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{scheduler_path}: unreadable ({exc})") from exc
    scheduler_config = plain_scheduler_config(DDPMScheduler.from_config(plain_scheduler_config(raw)).config)

    unet = read_unet(folder / "unet")
    in_ch, out_ch = unet.config.in_channels, unet.config.out_channels
    if in_ch != out_ch or in_ch not in (1, 3):
        raise CheckpointError(
            f"{folder / 'unet' / 'config.json'}: the network takes {in_ch} and predicts {out_ch} "
            f"channels; tskd needs a model of grey (1-channel) or RGB (3-channel) images with as many "
            f"output as input channels"
        )
    size = unet.config.sample_size
    if isinstance(size, (list, tuple)):
        if len(size) != 2 or size[0] != size[1]:
            raise CheckpointError(f"{folder / 'unet' / 'config.json'}: sample_size {size} is not square")
        size = size[0]
    if in_ch == 3:
        logger.info("%s makes RGB images: grey inputs are repeated, outputs averaged to grey", folder)

    base = config or DiffusionConfig()
    derived = _derived_config(base, unet.config, scheduler_config, int(size), folder)
    model = DiffusionModel(
        unet=unet,
        scheduler_config=scheduler_config,
        config=derived,
        intensity=IntensityMapping(derived.intensity_clip),
        num_classes=None,
        image_channels=in_ch,
        model_id=f"pretrained-{folder.name}-{weights_digest(folder / 'unet')}",
    )
    return model.to(device)


def _read_index(folder: Path) -> dict[str, Any]:
    path = folder / "model_index.json"
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing; a pretrained diffusion model must be a diffusers pipeline folder "
            f"(model_index.json, unet/, scheduler/) as written by DDPMPipeline.save_pretrained"
        )
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(index, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return index


def _derived_config(base: DiffusionConfig, unet_config: Any, scheduler_config: dict[str, Any],
                    size: int, folder: Path) -> DiffusionConfig:
    """``base`` with the numbers fixed by the pretrained model."""
    changes: dict[str, Any] = {
        "mode": "image",
        "image_size": size,
        "block_out_channels": list(unet_config.block_out_channels),
        "layers_per_block": int(unet_config.layers_per_block),
        "attention_levels": ["Attn" in name for name in unet_config.down_block_types],
        "norm_num_groups": int(unet_config.norm_num_groups),
        "num_train_timesteps": int(scheduler_config["num_train_timesteps"]),
        "prediction_type": scheduler_config.get("prediction_type", "epsilon"),
    }
    if unet_config.attention_head_dim:
        changes["attention_head_dim"] = int(unet_config.attention_head_dim)
    if scheduler_config.get("beta_schedule") in _BETA_SCHEDULES:
        changes["beta_schedule"] = scheduler_config["beta_schedule"]
    changes["sampling_steps"] = min(base.sampling_steps, changes["num_train_timesteps"])
    try:
        return base.replace(**changes)
    except ConfigError as exc:
        raise CheckpointError(f"{folder}: the pretrained model does not fit tskd's diffusion config ({exc})") from exc
