from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tskd.errors import CheckpointError
from tskd.synthesis.model import build_diffusion_model
from tskd.synthesis.sampler import generate
from tskd.synthesis.storage import fingerprint_arrays, load_diffusion_model, save_diffusion_model


def test_round_trip_keeps_weights_settings_and_samples(tmp_path, tiny_config, blobs):
    torch.manual_seed(0)
    config = tiny_config.replace(mode="joint", intensity_clip=2.5, sampler="dpm")
    model = build_diffusion_model(config, num_classes=3)
    images, _ = blobs(3, 16)
    model.data_fingerprint = fingerprint_arrays(images)
    folder = save_diffusion_model(model, tmp_path / "synthesis" / "model")
    assert model.model_id.startswith("tskd-") and len(model.model_id) == 17
    assert (folder / "model_index.json").is_file() and (folder / "unet" / "config.json").is_file()
    info = json.loads((folder / "diffusion.json").read_text(encoding="utf-8"))
    assert info["mode"] == "joint" and info["num_classes"] == 3 and info["model_id"] == model.model_id

    loaded = load_diffusion_model(folder)
    assert loaded.config == config and loaded.num_classes == 3
    assert loaded.intensity.clip == 2.5 and loaded.model_id == model.model_id
    assert loaded.data_fingerprint == model.data_fingerprint
    for a, b in zip(model.unet.state_dict().values(), loaded.unet.state_dict().values()):
        assert torch.equal(a, b)
    first, second = generate(model, 2, seed=1), generate(loaded, 2, seed=1)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)


def test_saving_again_replaces_atomically_and_changes_the_id(tmp_path, tiny_config):
    torch.manual_seed(0)
    model = build_diffusion_model(tiny_config)
    folder = save_diffusion_model(model, tmp_path / "model")
    first_id = model.model_id
    with torch.no_grad():
        next(model.unet.parameters()).add_(1.0)
    save_diffusion_model(model, folder)
    assert model.model_id != first_id
    assert load_diffusion_model(folder).model_id == model.model_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folders left


def test_fingerprint_tells_data_apart():
    a = np.zeros((3, 4, 4), np.float32)
    b = a.copy()
    b[1, 2, 2] = 1
    assert fingerprint_arrays(a) == fingerprint_arrays(a.copy()) != fingerprint_arrays(b)
    assert fingerprint_arrays(a) != fingerprint_arrays(a.astype(np.float64))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "diffusion.json").unlink(), "diffusers pipeline folder"),
        (lambda f: shutil.rmtree(f / "scheduler"), "scheduler_config.json"),
        (lambda f: [p.unlink() for p in (f / "unet").glob("*.safetensors")], "no weights"),
        (lambda f: (f / "diffusion.json").write_text("{", encoding="utf-8"), "unreadable"),
    ],
)
def test_incomplete_folders_raise_checkpoint_errors(tmp_path, tiny_config, damage, message):
    folder = save_diffusion_model(build_diffusion_model(tiny_config), tmp_path / "model")
    damage(folder)
    with pytest.raises(CheckpointError, match=message):
        load_diffusion_model(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_diffusion_model(tmp_path / "nothing")
