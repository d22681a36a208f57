"""LoRA through peft: which weights train, and how many."""

from __future__ import annotations

import pytest
import torch

from tskd.errors import ConfigError
from tskd.teacher.architectures import build_sam, get_architecture
from tskd.teacher.build import build_teacher
from tskd.teacher.checkpoints import BaseCheckpoint, load_pretrained_segmenter
from tskd.teacher.config import LoraConfig, TeacherConfig
from tskd.teacher.lora import apply_lora, trainable_parameter_report
from tskd.teacher.model import SamSegmenter


def _fake_base(arch: str) -> BaseCheckpoint:
    return BaseCheckpoint(path="/x.pth", sha256="0" * 64, size=0, architecture=arch, layout="official",
                          native_input_size=1024)


def test_vit_b_rank4_is_well_under_one_percent_of_the_encoder():
    sam = build_sam("vit_b", input_size=256, num_classes=2, device="meta")  # shapes only, no memory
    model = SamSegmenter(sam=sam, num_classes=2, architecture="vit_b", has_foundation_weights=True,
                         base=_fake_base("vit_b"))
    apply_lora(model, LoraConfig(rank=4))
    report = trainable_parameter_report(model)
    # per block: A (768 -> 4) + B (4 -> 3 * 768), on 12 blocks
    assert report["encoder_trainable"] == 12 * (768 * 4 + 4 * 3 * 768) == 147_456
    assert report["encoder_total"] > 85_000_000
    assert report["encoder_trainable_percent"] < 0.2
    decoder = model.sam.mask_decoder
    unused = sum(p.numel() for m in (decoder.iou_prediction_head, decoder.output_hypernetworks_mlps[0])
                 for p in m.parameters())
    assert report["trainable"] == report["encoder_trainable"] + sum(p.numel() for p in decoder.parameters()) - unused
    assert not any(p.requires_grad for p in model.sam.prompt_encoder.parameters())


def test_tiny_lora_trains_adapters_and_decoder_only(tiny_checkpoints):
    model = load_pretrained_segmenter(tiny_checkpoints.official_pth, input_size=64, num_classes=3)
    before = trainable_parameter_report(model)
    assert before["trainable"] == before["total"]
    apply_lora(model, LoraConfig(rank=2, targets=("qkv", "proj")))
    arch = get_architecture("tiny")
    width, depth = arch.encoder_width, arch.encoder_depth
    per_block = (width * 2 + 2 * 3 * width) + (width * 2 + 2 * width)
    report = trainable_parameter_report(model)
    assert report["encoder_trainable"] == depth * per_block
    assert report["total"] == before["total"] + depth * per_block
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or n.startswith("sam.mask_decoder.") for n in trainable)
    assert all(p.requires_grad for p in model.sam.mask_decoder.transformer.parameters())
    assert all(p.requires_grad for p in model.sam.mask_decoder.output_hypernetworks_mlps[1].parameters())
    assert not any(p.requires_grad for p in model.sam.mask_decoder.iou_prediction_head.parameters())
    assert report["has_foundation_weights"] == 1.0


def test_lora_starts_as_identity_and_learns(tiny_checkpoints):
    model = load_pretrained_segmenter(tiny_checkpoints.official_pth, input_size=64, num_classes=3)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        before = model(x)
    apply_lora(model, LoraConfig(rank=4))
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-6)  # B is initialised to zero
    model(x).square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert any(".lora_B." in n and g is not None and g.abs().sum() > 0 for n, g in grads.items())


def test_bad_targets_and_scratch_models_are_refused(tiny_checkpoints):
    model = load_pretrained_segmenter(tiny_checkpoints.official_pth, input_size=64, num_classes=3)
    with pytest.raises(ConfigError, match="teacher.lora.targets"):
        apply_lora(model, LoraConfig(targets=("q_proj_missing",)))
    scratch = build_teacher(TeacherConfig(base="none", architecture="tiny", input_size=64), num_classes=3)
    with pytest.raises(ValueError, match="base 'none'"):
        apply_lora(scratch, LoraConfig())


def test_base_none_trains_everything_and_says_so():
    model = build_teacher(TeacherConfig(base="none", input_size=64), num_classes=2)
    assert model.architecture == "small"
    assert model.has_foundation_weights is False and model.lora is None and model.base is None
    report = trainable_parameter_report(model)
    assert report["trainable"] > 0.95 * report["total"]
    assert report["encoder_trainable_percent"] == 100.0
    assert report["has_foundation_weights"] == 0.0
    assert "has_foundation_weights=False" in repr(model)


@pytest.mark.parametrize("kind,boxes", [("scratch", False), ("scratch", True), ("lora", False), ("lora", True)])
def test_every_trainable_weight_gets_a_gradient(tiny_checkpoints, kind, boxes):
    """So that DDP needs no find_unused_parameters."""
    if kind == "scratch":
        model = build_teacher(TeacherConfig(base="none", architecture="tiny", input_size=64), num_classes=3)
    else:
        model = load_pretrained_segmenter(tiny_checkpoints.official_pth, input_size=64, num_classes=3)
        apply_lora(model, LoraConfig(rank=2))
    box = torch.tensor([[[4.0, 4.0, 30.0, 30.0], [-1.0, -1.0, -1.0, -1.0]]]).repeat(2, 1, 1) if boxes else None
    model(torch.randn(2, 1, 64, 64), boxes=box).square().mean().backward()
    without = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert without == []
