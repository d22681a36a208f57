from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel

from tskd.errors import CheckpointError
from tskd.synthesis.config import DiffusionConfig
from tskd.synthesis.model import sampling_scheduler
from tskd.synthesis.pretrained import load_pretrained_pipeline
from tskd.synthesis.sampler import generate, initial_noise
from tskd.synthesis.task import DiffusionTask


def _unet(channels: int) -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=16, in_channels=channels, out_channels=channels, block_out_channels=(16, 32),
        layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, attention_head_dim=8,
    )


def _save(tmp_path, channels=1, pipeline="ddpm"):
    folder = tmp_path / "pretrained-pipe"
    unet = _unet(channels)
    if pipeline == "ddpm":
        DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=200, beta_schedule="linear")).save_pretrained(folder)
    else:
        DDIMPipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=200, prediction_type="v_prediction")).save_pretrained(folder)
    return folder, unet


@pytest.mark.parametrize("pipeline", ["ddpm", "ddim"])
def test_grey_pipeline_round_trip(tmp_path, pipeline):
    folder, unet = _save(tmp_path, 1, pipeline)
    model = load_pretrained_pipeline(folder, config=DiffusionConfig(sampling_steps=4, sampler="dpm"))
    assert model.image_channels == 1 and model.mode == "image"
    assert model.config.image_size == 16 and model.config.num_train_timesteps == 200
    assert model.config.attention_levels == (False, True) and model.config.sampling_steps == 4
    assert model.config.prediction_type == ("epsilon" if pipeline == "ddpm" else "v_prediction")
    assert model.model_id.startswith("pretrained-pretrained-pipe-")
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([3, 150])
    for a, b in zip(unet.state_dict().values(), model.unet.state_dict().values()):
        assert torch.equal(a, b)
    with torch.no_grad():
        np.testing.assert_allclose(unet(x, t).sample.numpy(), model.unet(x, t).sample.numpy(), atol=1e-5)
    out = generate(model, 2, seed=0)
    assert out.images.shape == (2, 1, 16, 16) and np.isfinite(out.images).all()


def test_rgb_pipeline_makes_grey_by_averaging_and_trains_on_repeated_grey(tmp_path):
    folder, _ = _save(tmp_path, 3)
    model = load_pretrained_pipeline(folder, config=DiffusionConfig(sampling_steps=3, intensity_clip=2.0))
    assert model.image_channels == 3
    out = generate(model, 1, seed=4, sampler="ddim")
    # the same reverse process by hand, in RGB, then averaged
    scheduler = sampling_scheduler(model.scheduler_config, "ddim")
    scheduler.set_timesteps(3)
    sample = initial_noise(4, (3, 16, 16))[None]
    with torch.no_grad():
        for t in scheduler.timesteps:
            sample = scheduler.step(model.unet(sample, t).sample, t, sample).prev_sample
    expected = sample.mean(dim=1, keepdim=True).clamp(-1, 1) * 2.0
    np.testing.assert_allclose(out.images, expected.numpy(), atol=1e-5)

    task = DiffusionTask.for_model(model)
    x0 = task.prepare({"image": torch.linspace(-3, 3, 256).reshape(1, 1, 16, 16)})
    assert x0.shape == (1, 3, 16, 16) and torch.equal(x0[:, 0], x0[:, 2])
    loss, _ = task.training_step(model.unet, {"image": torch.randn(2, 1, 16, 16)})
    loss.backward()
    assert float(loss.detach()) > 0


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "model_index.json").unlink(), "model_index.json"),
        (lambda f: shutil.rmtree(f / "scheduler"), "scheduler"),
        (lambda f: [p.unlink() for p in (f / "unet").glob("diffusion_pytorch_model*")], "no weights"),
        (lambda f: (f / "unet" / "config.json").unlink(), "config.json"),
        (lambda f: (f / "model_index.json").write_text(json.dumps(
            {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "PNDMScheduler"]}), encoding="utf-8"), "latent"),
    ],
)
def test_incomplete_or_unsupported_pipelines_are_explained(tmp_path, damage, message):
    folder, _ = _save(tmp_path, 1)
    damage(folder)
    with pytest.raises(CheckpointError, match=message):
        load_pretrained_pipeline(folder)


def test_unsupported_channel_count(tmp_path):
    folder = tmp_path / "four"
    DDPMPipeline(unet=_unet(4), scheduler=DDPMScheduler()).save_pretrained(folder)
    with pytest.raises(CheckpointError, match="grey .*1-channel.* or RGB"):
        load_pretrained_pipeline(folder)
    with pytest.raises(CheckpointError, match="not found"):
        load_pretrained_pipeline(tmp_path / "missing")
