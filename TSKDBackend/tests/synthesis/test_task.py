from __future__ import annotations

import numpy as np
import pytest
import torch

from tskd.synthesis.model import build_diffusion_model
from tskd.synthesis.task import DiffusionTask


def _batches(blobs, n_batches, batch, size, seed=0):
    images, labels = blobs(n_batches * batch, size, seed=seed)
    for i in range(n_batches):
        sl = slice(i * batch, (i + 1) * batch)
        yield {
            "image": torch.from_numpy(images[sl]),
            "label": torch.from_numpy(labels[sl]),
            "labelled": torch.ones(batch, dtype=torch.bool),
        }


def _train(task, unet, batches, lr=3e-3):
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr)
    unet.train()
    for batch in batches:
        loss, logs = task.training_step(unet, batch)
        assert loss.dim() == 0 and loss.requires_grad
        assert logs["loss"] == pytest.approx(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_denoising_loss_falls_on_blobs(tiny_config, blobs):
    torch.manual_seed(0)
    model = build_diffusion_model(tiny_config)
    val_images, val_labels = blobs(4, 32, seed=99)
    task = DiffusionTask.for_model(model, val_batch={"image": val_images, "label": val_labels})
    before = task.validate(model.unet)["val_loss"]
    # prepared slices (32 px) larger than the model (16 px) are resized by the task
    _train(task, model.unet, _batches(blobs, 40, 8, 32))
    after = task.validate(model.unet)
    assert after["val_loss"] < 0.5 * before
    assert model.unet.training  # validate restores the mode


def test_validate_is_fixed_and_leaves_global_rng_alone(tiny_config, blobs):
    torch.manual_seed(0)
    model = build_diffusion_model(tiny_config)
    images, _ = blobs(6, 16)
    task = DiffusionTask.for_model(model, val_batch={"image": images})
    state = torch.get_rng_state()
    first = task.validate(model.unet)
    assert torch.equal(state, torch.get_rng_state())
    assert task.validate(model.unet) == first
    assert DiffusionTask(tiny_config).validate(model.unet) == {}


def test_training_step_uses_global_rng_so_resume_repeats_it(tiny_config, blobs):
    model = build_diffusion_model(tiny_config)
    task = DiffusionTask(tiny_config)
    batch = next(_batches(blobs, 1, 4, 16))
    torch.manual_seed(5)
    a, _ = task.training_step(model.unet, batch)
    torch.manual_seed(5)
    b, _ = task.training_step(model.unet, batch)
    c, _ = task.training_step(model.unet, batch)
    assert float(a.detach()) == float(b.detach()) != float(c.detach())


def test_joint_mode_trains_on_labelled_samples_only(tiny_config, blobs):
    torch.manual_seed(0)
    config = tiny_config.replace(mode="joint")
    model = build_diffusion_model(config, num_classes=2)
    task = DiffusionTask.for_model(model)
    images, labels = blobs(4, 16)
    batch = {"image": torch.from_numpy(images), "label": torch.from_numpy(labels),
             "labelled": torch.tensor([True, False, True, False])}
    x0 = task.prepare(batch)
    assert x0.shape == (2, 3, 16, 16)
    assert torch.equal(x0[:, 1:].argmax(dim=1), torch.from_numpy(labels[[0, 2]]))
    loss, logs = task.training_step(model.unet, batch)
    assert logs["samples"] == 2.0 and float(loss.detach()) > 0
    batch["labelled"] = torch.zeros(4, dtype=torch.bool)
    loss, logs = task.training_step(model.unet, batch)
    assert float(loss.detach()) == 0.0 and logs["samples"] == 0.0
    loss.backward()  # still a valid graph


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_other_prediction_targets(tiny_config, prediction_type):
    task = DiffusionTask(tiny_config.replace(prediction_type=prediction_type))
    x0 = torch.rand(2, 1, 4, 4) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.tensor([10, 90])
    target = task.target(x0, noise, t)
    if prediction_type == "sample":
        assert torch.equal(target, x0)
    else:
        alpha = task.scheduler.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)
        sigma = (1 - task.scheduler.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
        assert torch.allclose(target, alpha * noise - sigma * x0, atol=1e-6)


def test_bad_batch_shape_is_explained(tiny_config):
    task = DiffusionTask(tiny_config)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        task.prepare({"image": np.zeros((2, 16, 16), np.float32)})
