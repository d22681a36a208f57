"""LiteMedSAM's TinyViT encoder and its place among the SAM architectures, on random weights."""

from __future__ import annotations

import pytest
import torch

from tskd.errors import CheckpointError
from tskd.teacher.architectures import build_sam, get_architecture
from tskd.teacher.checkpoints import detect_architecture, load_pretrained_segmenter
from tskd.teacher.model import SamSegmenter
from tskd.teacher.tiny_vit import TinyViTEncoder, _offset_index


def test_offset_index_is_row_major_absolute_offsets():
    index = _offset_index(3)
    # token 0 is (0, 0), token 5 is (1, 2), token 7 is (2, 1)
    assert index[0, 5] == 1 * 3 + 2
    assert index[5, 7] == 1 * 3 + 1
    assert index[7, 5] == index[5, 7]
    assert torch.equal(index.diagonal(), torch.zeros(9, dtype=index.dtype))
    assert int(index.max()) == 8


# a batch of 2 at the small sizes (the batch axis is kept), one image at the native 256 (its encoder pass
# is what this file spent most of its time on: 16 s of 37 s with two images, one thread)
@pytest.mark.parametrize("size, batch", [(64, 2), (96, 2), (256, 1)])
def test_encoder_gives_a_quarter_grid_of_256_channels(size, batch):
    torch.manual_seed(0)
    encoder = TinyViTEncoder().eval()
    with torch.no_grad():
        out = encoder(torch.rand(batch, 3, size, size))
    assert out.shape == (batch, 256, size // 4, size // 4)
    assert torch.isfinite(out).all()


def test_encoder_refuses_sizes_it_cannot_take():
    with pytest.raises(ValueError, match="multiple of 4"):
        TinyViTEncoder()(torch.rand(1, 3, 66, 66))


def test_parameter_count_is_litemedsams():
    sam = build_sam("litemedsam", input_size=256, num_classes=3, device="meta")
    encoder = sum(p.numel() for p in sam.vision_encoder.parameters())
    total = sum(p.numel() for p in sam.parameters())
    assert 5.5e6 < encoder < 5.9e6  # "about 5.7 M"
    assert 9.5e6 < total < 10.0e6  # "9.8 M" with the prompt encoder and decoder


def test_segmenter_runs_and_scales_each_image_to_unit_range():
    torch.manual_seed(0)
    sam = build_sam("litemedsam", input_size=64, num_classes=3)
    model = SamSegmenter(sam=sam, num_classes=3, architecture="litemedsam", has_foundation_weights=False).eval()
    assert model.embedding_size == 16 and model.input_scaling == "minmax"
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        logits = model(x)
        shifted = model(3.0 * x + 5.0)  # an affine change of intensities reaches the encoder as the same image
        boxes = model.box_masks(model.image_embeddings(x), torch.tensor([[[4.0, 4.0, 40.0, 50.0]]] * 2))
    assert logits.shape == (2, 3, 64, 64)
    torch.testing.assert_close(logits, shifted, rtol=1e-4, atol=1e-4)
    assert boxes.shape == (2, 1, 64, 64)


def _official_state(sam) -> dict:
    """A litemedsam model's weights under the names of lite_medsam.pth (image_encoder.* etc.)."""
    from tests.teacher.teacher_sam_reference import hf_to_official

    state = {k: v for k, v in sam.state_dict().items() if not k.startswith("vision_encoder.")}
    official = hf_to_official(state)
    for key, value in sam.vision_encoder.state_dict().items():
        key = key.replace("neck.conv1", "neck.0").replace("neck.layer_norm1", "neck.1")
        key = key.replace("neck.conv2", "neck.2").replace("neck.layer_norm2", "neck.3")
        official["image_encoder." + key] = value
    return official


def test_a_checkpoint_in_the_published_layout_loads_strictly_and_is_detected(tmp_path):
    torch.manual_seed(1)
    source = build_sam("litemedsam", input_size=256, num_classes=3).eval()
    path = tmp_path / "lite_medsam.pth"
    torch.save(_official_state(source), path)
    model = load_pretrained_segmenter(path, input_size=256, num_classes=3).eval()
    assert model.architecture == "litemedsam" and model.base.architecture == "litemedsam"
    assert model.base.native_input_size == 256
    x = torch.rand(1, 1, 256, 256)
    x[..., 0, 0], x[..., 0, 1] = 0.0, 1.0  # already in [0, 1]: the min-max scaling leaves it as is
    with torch.no_grad():
        expected = source.vision_encoder(x.expand(-1, 3, -1, -1))
        torch.testing.assert_close(model.image_embeddings(x), expected)


def test_a_missing_or_renamed_tensor_is_named(tmp_path):
    torch.manual_seed(1)
    state = _official_state(build_sam("litemedsam", input_size=256, num_classes=3))
    state.pop("image_encoder.layers.2.blocks.3.attn.qkv.weight")
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"layers\.2\.blocks\.3\.attn\.qkv\.weight"):
        load_pretrained_segmenter(path, input_size=256, num_classes=3)


def test_another_tiny_vit_is_not_taken_for_litemedsam():
    state = {
        "vision_encoder.patch_embed.seq.0.c.weight": torch.zeros(32, 3, 1, 1),
        "vision_encoder.layers.0.blocks.0.conv1.c.weight": torch.zeros(384, 96, 1, 1),
        "vision_encoder.layers.1.blocks.0.attn.proj.weight": torch.zeros(192, 192),
    }
    with pytest.raises(CheckpointError, match="not LiteMedSAM's"):
        detect_architecture(state, path="mobile_sam.pt")


def test_registry_describes_litemedsam():
    arch = get_architecture("litemedsam")
    assert arch.encoder == "tinyvit" and arch.patch_size == 4 and arch.native_input_size == 256
    assert arch.tiny_vit_spec().widths == (64, 128, 160, 320)
