"""Loading SAM weights: every file format, detection, resizing, K-class adaptation, strictness, hashing."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F
from tests.teacher.conftest import NATIVE
from safetensors.torch import save_file

from tskd.errors import CheckpointError
from tskd.teacher.checkpoints import (
    CHECKPOINT_HELP,
    detect_architecture,
    file_sha256,
    load_pretrained_segmenter,
    load_sam,
)

SAM_URL = "https://github.com/facebookresearch/segment-anything#model-checkpoints"
MEDSAM_URL = "https://github.com/bowang-lab/MedSAM"


def _reference_logits(source, x: torch.Tensor) -> torch.Tensor:
    """What transformers' own SamModel predicts without prompts, upsampled to the input."""
    with torch.no_grad():
        masks = source(pixel_values=x.expand(-1, 3, -1, -1), multimask_output=True).pred_masks[:, 0]
    return F.interpolate(masks, size=x.shape[-2:], mode="bilinear", align_corners=False)


@pytest.mark.parametrize("fmt", ["official_pth", "official_safetensors", "hf_folder", "hf_safetensors"])
def test_every_format_loads_to_the_same_model(tiny_checkpoints, fmt):
    path = getattr(tiny_checkpoints, fmt)
    model = load_pretrained_segmenter(path, input_size=NATIVE, num_classes=3)
    assert model.architecture == "tiny"
    assert model.has_foundation_weights is True
    assert model.base.layout == ("official" if fmt.startswith("official") else "hf")
    assert model.base.native_input_size == NATIVE

    torch.manual_seed(1)
    x = torch.randn(2, 1, NATIVE, NATIVE)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 3, NATIVE, NATIVE)
    # identical to transformers' own forward on the very same weights: mapping and decode path are right
    assert torch.equal(logits, _reference_logits(tiny_checkpoints.source, x))


def test_official_pth_and_hf_folder_give_identical_logits(tiny_checkpoints):
    a = load_pretrained_segmenter(tiny_checkpoints.official_pth, input_size=64, num_classes=4)
    b = load_pretrained_segmenter(tiny_checkpoints.hf_folder, input_size=64, num_classes=4)
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
        assert torch.equal(a.image_embeddings(x), b.image_embeddings(x))
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), name


def test_tied_positional_matrix_is_shared(tiny_checkpoints):
    sam, _ = load_sam(tiny_checkpoints.official_pth, input_size=NATIVE, num_classes=3)
    assert sam.prompt_encoder.shared_embedding.positional_embedding is sam.shared_image_embedding.positional_embedding
    expected = tiny_checkpoints.official_state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"]
    assert torch.equal(sam.shared_image_embedding.positional_embedding, expected)


@pytest.mark.parametrize("size", [64, 256])
def test_smaller_or_larger_input_resizes_position_tables_once(tiny_checkpoints, size):
    official = tiny_checkpoints.official_state
    sam, info = load_sam(tiny_checkpoints.official_pth, input_size=size, num_classes=3)
    grid = size // 16
    assert info.native_input_size == NATIVE
    pos = sam.vision_encoder.pos_embed
    assert pos.shape == (1, grid, grid, 32)
    expected = F.interpolate(
        official["image_encoder.pos_embed"].permute(0, 3, 1, 2), size=(grid, grid), mode="bilinear", align_corners=False
    ).permute(0, 2, 3, 1)
    assert torch.allclose(pos, expected)
    # block 1 is global: its table follows the grid; block 0 is windowed (window 4): kept as is
    glob = sam.vision_encoder.layers[1].attn.rel_pos_h
    assert glob.shape == (2 * grid - 1, 16)
    expected = F.interpolate(
        official["image_encoder.blocks.1.attn.rel_pos_h"].t()[None], size=2 * grid - 1, mode="linear", align_corners=False
    )[0].t()
    assert torch.allclose(glob, expected)
    assert torch.equal(sam.vision_encoder.layers[0].attn.rel_pos_w, official["image_encoder.blocks.0.attn.rel_pos_w"])

    model = load_pretrained_segmenter(tiny_checkpoints.hf_folder, input_size=size, num_classes=3)
    x = torch.randn(1, 1, size, size)
    with torch.no_grad():
        logits = model(x)
        embeddings = model.image_embeddings(x)
    assert logits.shape == (1, 3, size, size) and torch.isfinite(logits).all()
    assert embeddings.shape == (1, model.embedding_dim, grid, grid) == (1, 32, grid, grid)


@pytest.mark.parametrize("num_classes,source", [(5, [0, 1, 2, 3, 0, 1]), (2, [0, 1, 2])])
def test_decoder_heads_are_copied_cyclically_for_k_classes(tiny_checkpoints, num_classes, source):
    official = tiny_checkpoints.official_state
    sam, _ = load_sam(tiny_checkpoints.official_pth, input_size=NATIVE, num_classes=num_classes)
    decoder = sam.mask_decoder
    assert torch.equal(decoder.mask_tokens.weight, official["mask_decoder.mask_tokens.weight"][source])
    assert len(decoder.output_hypernetworks_mlps) == num_classes + 1
    for j, i in enumerate(source):
        assert torch.equal(
            decoder.output_hypernetworks_mlps[j].proj_out.weight,
            official[f"mask_decoder.output_hypernetworks_mlps.{i}.layers.2.weight"],
        )
    assert torch.equal(
        decoder.iou_prediction_head.proj_out.bias, official["mask_decoder.iou_prediction_head.layers.2.bias"][source]
    )


def _meta_state(width: int, depth: int) -> dict:
    return {
        "vision_encoder.patch_embed.projection.weight": torch.empty(width, 3, 16, 16, device="meta"),
        **{f"vision_encoder.layers.{i}.attn.qkv.weight": torch.empty(1, device="meta") for i in range(depth)},
    }


def test_detection_by_width_and_depth():
    assert detect_architecture(_meta_state(768, 12), path="sam_vit_b_01ec64.pth") == "vit_b"
    assert detect_architecture(_meta_state(768, 12), path="/models/medsam_vit_b.pth") == "medsam"
    assert detect_architecture(_meta_state(1024, 24), path="sam_vit_l_0b3195.pth") == "vit_l"
    assert detect_architecture(_meta_state(1280, 32), path="sam_vit_h_4b8939.pth") == "vit_h"
    assert detect_architecture(_meta_state(32, 2)) == "tiny"
    with pytest.raises(CheckpointError, match=r"640 wide and 12 deep"):
        detect_architecture(_meta_state(640, 12), path="odd.pth")


def _expect_error(path, *patterns, **kwargs):
    with pytest.raises(CheckpointError) as info:
        load_sam(path, input_size=64, num_classes=3, **kwargs)
    message = str(info.value)
    assert str(path) in message
    for pattern in patterns:
        assert pattern in message, message
    return message


def test_missing_key_is_named(tiny_checkpoints, tmp_path):
    state = dict(tiny_checkpoints.official_state)
    del state["image_encoder.blocks.1.mlp.lin2.bias"]
    path = tmp_path / "sam_missing.pth"
    torch.save(state, path)
    _expect_error(path, "1 missing", "vision_encoder.layers.1.mlp.lin2.bias", SAM_URL, MEDSAM_URL)


def test_extra_key_is_named(tiny_checkpoints, tmp_path):
    state = dict(tiny_checkpoints.official_state)
    state["image_encoder.blocks.0.attn.extra_scale"] = torch.ones(3)
    path = tmp_path / "sam_extra.pth"
    torch.save(state, path)
    _expect_error(path, "1 unexpected", "image_encoder.blocks.0.attn.extra_scale")


def test_wrong_shape_is_named(tiny_checkpoints, tmp_path):
    state = dict(tiny_checkpoints.official_state)
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 33)
    path = tmp_path / "sam_shape.safetensors"
    save_file(state, str(path))
    _expect_error(path, "1 of the wrong shape", "mask_decoder.iou_token.weight (1, 33) instead of (1, 32)")


def test_not_a_checkpoint_and_missing_file(tmp_path):
    text = tmp_path / "sam_vit_b_01ec64.pth"
    text.write_text("this is not a checkpoint\n", encoding="utf-8")
    _expect_error(text, "not a PyTorch checkpoint", SAM_URL, MEDSAM_URL)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 20)
    _expect_error(broken, "not a readable .safetensors file")
    _expect_error(tmp_path / "nowhere.pth", "checkpoint not found", SAM_URL, MEDSAM_URL)
    folder = tmp_path / "empty_folder"
    folder.mkdir()
    _expect_error(folder, "no config.json")


def test_checkpoint_of_another_model(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).state_dict(), path)
    _expect_error(path, "not a SAM checkpoint", "0.weight", SAM_URL)
    wrapped = tmp_path / "training_checkpoint.pth"
    torch.save({"epoch": 3, "optimizer": {}}, wrapped)
    _expect_error(wrapped, "holds no state dict of tensors")


def test_wrapped_and_ddp_prefixed_checkpoints_load(tiny_checkpoints, tmp_path):
    path = tmp_path / "medsam_style.pth"
    torch.save({"model": {"module." + k: v for k, v in tiny_checkpoints.official_state.items()}, "epoch": 1}, path)
    _, info = load_sam(path, input_size=64, num_classes=3)
    assert info.architecture == "tiny"


def test_asked_architecture_must_match(tiny_checkpoints):
    _expect_error(tiny_checkpoints.official_pth, "holds SAM tiny weights but architecture 'vit_b' was asked",
                  architecture="vit_b")
    _, info = load_sam(tiny_checkpoints.official_pth, input_size=64, num_classes=3, architecture="tiny")
    assert info.architecture == "tiny"


def test_sha256_is_recorded_and_cached(tiny_checkpoints, tmp_path):
    _, info = load_sam(tiny_checkpoints.official_pth, input_size=64, num_classes=3)
    data = tiny_checkpoints.official_pth.read_bytes()
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.size == len(data)
    copy = tmp_path / "copy.bin"
    copy.write_bytes(b"abc")
    assert file_sha256(copy) == hashlib.sha256(b"abc").hexdigest()
    copy.write_bytes(b"abcd")  # new size -> new cache entry
    assert file_sha256(copy) == hashlib.sha256(b"abcd").hexdigest()


def test_help_names_where_official_files_are():
    assert SAM_URL in CHECKPOINT_HELP and MEDSAM_URL in CHECKPOINT_HELP


@pytest.mark.slow
def test_full_size_vit_b_in_the_official_layout(tmp_path):
    """A random ViT-B with segment-anything's names and sizes (375 MB) loads at 256 px as MedSAM."""
    from tests.teacher.teacher_sam_reference import OfficialSam

    torch.manual_seed(0)
    reference = OfficialSam(dim=768, depth=12, heads=12, global_idx=(2, 5, 8, 11), window=14, grid=64,
                            out_chans=256, mask_in_chans=16, dec_mlp=2048, iou_hidden=256)
    state = reference.state_dict()
    assert sum(v.numel() for v in state.values()) == 93_735_728  # the size of sam_vit_b_01ec64.pth
    path = tmp_path / "medsam_vit_b.pth"
    torch.save(state, path)
    model = load_pretrained_segmenter(path, input_size=256, num_classes=4)
    assert model.architecture == "medsam" and model.base.native_input_size == 1024
    assert model.sam.vision_encoder.layers[5].attn.rel_pos_h.shape == (31, 64)
    assert model.sam.vision_encoder.layers[4].attn.rel_pos_h.shape == (27, 64)
    with torch.no_grad():
        assert model(torch.randn(1, 1, 256, 256)).shape == (1, 4, 256, 256)
