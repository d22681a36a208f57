from __future__ import annotations

import pytest
import torch

from tskd.errors import CheckpointError
from tskd.student import (
    FeatureProjector,
    MAEConfig,
    MAETask,
    StudentWithProjector,
    build_mae,
    build_student,
    transfer_mae_encoder,
)
from tskd.student.mae import mae_loss, patchify


def _randomise(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p))


@pytest.mark.parametrize("name", ["vit_nano", "vit_tiny"])
def test_transfer_copies_every_encoder_weight(name):
    torch.manual_seed(0)
    mae = build_mae(name, input_size=32)
    _randomise(mae)  # make every MAE tensor distinct from any initialisation
    student = build_student(name, num_classes=2, input_size=32)
    decoder_before = {k: v.clone() for k, v in student.state_dict().items() if not k.startswith("encoder.")}
    mapping = transfer_mae_encoder(mae, student)
    encoder_state = student.encoder.state_dict()
    source = mae.state_dict()
    assert sorted(mapping.values()) == sorted(encoder_state)  # every student encoder tensor got a value
    encoder_keys = [k for k in source if not k.startswith(("decoder_", "mask_tokens"))]
    assert sorted(mapping) == sorted(encoder_keys)  # every MAE encoder tensor has a place
    for src, dst in mapping.items():
        assert torch.equal(encoder_state[dst], source[src]), (src, dst)
    layers = len(student.encoder.blocks)
    assert mapping[f"blocks.{layers}.weight"] == "norm.weight" and mapping["cls_token"] == "cls_token"
    for key, value in student.state_dict().items():  # the decoder is left alone
        if not key.startswith("encoder."):
            assert torch.equal(value, decoder_before[key]), key


def test_transfer_resizes_position_embeddings_and_accepts_a_wrapped_student():
    torch.manual_seed(0)
    mae = build_mae("vit_nano", input_size=32)
    student = build_student("vit_nano", num_classes=2, input_size=64)
    wrapped = StudentWithProjector(student=student, projector=FeatureProjector(student.feature_channels, 4))
    transfer_mae_encoder(mae, wrapped)
    pos = student.encoder.patch_embedding.position_embeddings
    assert pos.shape == (1, 16, 48)
    assert torch.equal(student.encoder.blocks[0].attn.qkv.weight, mae.blocks[0].attn.qkv.weight)
    assert torch.allclose(pos.mean(), mae.patch_embedding.position_embeddings.mean(), atol=0.05)


def test_transfer_names_unmatched_keys():
    mae = build_mae("vit_nano", input_size=32)
    student = build_student("vit_tiny", num_classes=2, input_size=32)
    with pytest.raises(CheckpointError) as info:
        transfer_mae_encoder(mae, student)
    message = str(info.value)
    assert "blocks.4.weight" in message and "blocks.11.attn.qkv.weight" in message
    with pytest.raises(ValueError, match="ViT student"):
        transfer_mae_encoder(mae, build_student("unet_tiny", num_classes=2, input_size=32))


def test_patchify_follows_the_token_order():
    images = torch.arange(2 * 1 * 32 * 32, dtype=torch.float32).reshape(2, 1, 32, 32)
    patches = patchify(images, 16)
    assert patches.shape == (2, 4, 256)
    # token n is the patch at row n // 2, column n % 2 (conv patch embedding, flattened row-major)
    assert torch.equal(patches[1, 1], images[1, 0, :16, 16:].reshape(-1))
    assert torch.equal(patches[0, 2], images[0, 0, 16:, :16].reshape(-1))


def test_mae_loss_counts_only_hidden_patches():
    target = torch.randn(1, 4, 8)
    pred = target.clone()
    pred[0, 0] += 1.0  # wrong only on a visible patch
    mask = torch.tensor([[0, 1, 1, 1]])
    assert float(mae_loss(pred, mask, target, norm_pix_loss=False)) == 0.0
    assert float(mae_loss(pred, torch.tensor([[1, 0, 0, 0]]), target, norm_pix_loss=False)) == pytest.approx(1.0)


def test_mae_task_trains_and_validates_reproducibly(discs):
    torch.manual_seed(0)
    images, _ = discs(8, size=32)
    config = MAEConfig(masking_ratio=0.5, decoder_hidden_size=32, decoder_num_heads=2, decoder_num_layers=1)
    mae = build_mae("vit_nano", input_size=32, config=config)
    task = MAETask(config=config, val_data=[{"image": images[:4]}])
    before = task.validate(mae)
    state = torch.get_rng_state()
    assert task.validate(mae) == before and torch.equal(torch.get_rng_state(), state)
    opt = torch.optim.AdamW([p for p in mae.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(40):
        loss, metrics = task.training_step(mae, {"image": images})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(metrics["loss"])
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])
    assert task.validate(mae)["val_mae_loss"] < before["val_mae_loss"]
    with pytest.raises(ValueError, match="built for"):
        task.training_step(mae, {"image": torch.zeros(1, 1, 64, 64)})
