"""SamSegmenter: shapes, embeddings, box prompts; the architecture registry."""

from __future__ import annotations

import pytest
import torch

from tskd.teacher.architectures import available_architectures, build_sam, get_architecture, sam_config
from tskd.teacher.build import build_scratch_segmenter
from tskd.teacher.model import SamSegmenter, boxes_from_labels


def test_registry_numbers():
    expected = {
        "vit_b": (768, 12, 12, (2, 5, 8, 11)),
        "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
        "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
        "medsam": (768, 12, 12, (2, 5, 8, 11)),
    }
    for name, numbers in expected.items():
        arch = get_architecture(name)
        assert (arch.encoder_width, arch.encoder_depth, arch.encoder_heads, arch.global_attn_indexes) == numbers
        assert arch.embedding_dim == 256 and arch.window_size == 14 and arch.foundation
    assert {"tiny", "small"} <= set(available_architectures())
    with pytest.raises(ValueError, match="unknown SAM architecture 'vit_x'"):
        get_architecture("vit_x")


@pytest.mark.parametrize("size", [256, 512, 1024])
def test_vit_b_config_at_several_input_sizes(size):
    config = sam_config("vit_b", input_size=size, num_classes=4)
    assert config.vision_config.num_pos_feats * 2 == config.prompt_encoder_config.hidden_size
    assert config.mask_decoder_config.num_multimask_outputs == 4
    sam = build_sam("vit_b", input_size=size, num_classes=4, device="meta")
    grid = size // 16
    assert sam.vision_encoder.pos_embed.shape == (1, grid, grid, 768)
    assert sam.vision_encoder.layers[2].attn.rel_pos_h.shape == (2 * grid - 1, 64)  # global
    assert sam.vision_encoder.layers[0].attn.rel_pos_h.shape == (27, 64)  # windowed, 14 x 14
    assert sam.mask_decoder.mask_tokens.weight.shape == (5, 256)


@pytest.mark.parametrize("bad", [100, 8, 0])
def test_input_size_must_be_a_multiple_of_16(bad):
    with pytest.raises(ValueError, match="multiple of 16"):
        sam_config("tiny", input_size=bad, num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        sam_config("tiny", input_size=64, num_classes=1)


def test_forward_shapes_and_embeddings():
    torch.manual_seed(0)
    model = build_scratch_segmenter("tiny", input_size=64, num_classes=4).eval()
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        logits = model(x)
        embeddings = model.image_embeddings(x)
        both = model.forward_with_embeddings(x)
    assert logits.shape == (3, 4, 64, 64)
    assert embeddings.shape == (3, model.embedding_dim, 4, 4) and model.embedding_size == 4
    assert torch.equal(both[0], logits) and torch.equal(both[1], embeddings)
    with pytest.raises(ValueError, match=r"\(B, 1, 64, 64\)"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="multimask outputs"):
        SamSegmenter(sam=build_sam("tiny", input_size=64, num_classes=3), num_classes=4, architecture="tiny",
                     has_foundation_weights=False)


def test_boxes_from_labels():
    labels = torch.zeros(2, 16, 20, dtype=torch.long)
    labels[0, 2:5, 3:9] = 1  # rows 2-4, columns 3-8
    labels[0, 10, 15] = 2
    labels[1, 0:16, 0:1] = 2
    boxes = boxes_from_labels(labels, 3)
    assert boxes.shape == (2, 2, 4) and boxes.dtype == torch.float32
    assert boxes[0, 0].tolist() == [3, 2, 8, 4]
    assert boxes[0, 1].tolist() == [15, 10, 15, 10]
    assert boxes[1, 0].tolist() == [-1, -1, -1, -1]  # class 1 absent
    assert boxes[1, 1].tolist() == [0, 0, 0, 15]
    assert boxes_from_labels(labels, 3, margin=2)[0, 0].tolist() == [1, 0, 10, 6]


def test_box_prompts_change_the_prediction_and_absent_boxes_are_ignored():
    torch.manual_seed(0)
    model = build_scratch_segmenter("tiny", input_size=64, num_classes=3).eval()
    x = torch.randn(2, 1, 64, 64)
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[:, 10:30, 20:40] = 1
    boxes = boxes_from_labels(labels, 3)
    with torch.no_grad():
        free = model(x)
        boxed = model(x, boxes=boxes)
        moved = model(x, boxes=boxes + torch.tensor([5.0, 5.0, 5.0, 5.0]) * (boxes >= 0))
    assert boxed.shape == (2, 3, 64, 64)
    assert not torch.allclose(free, boxed)
    assert not torch.allclose(boxed, moved)  # the box position matters
    # an absent class enters as "not a point": its coordinates do not matter
    other = boxes.clone()
    assert (other[:, 1] == -1).all()
    other[:, 1] = torch.tensor([-1.0, -5.0, -7.0, -1.0])
    with torch.no_grad():
        assert torch.equal(model(x, boxes=other), boxed)
    with pytest.raises(ValueError, match="boxes"):
        model(x, boxes=torch.zeros(3, 1, 4))
