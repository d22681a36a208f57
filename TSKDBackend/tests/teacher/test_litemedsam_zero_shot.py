"""LiteMedSAM's official weights segment real HC18 ultrasound from a box, with no training.

The boxes are the reference masks' bounding boxes; the path is the one the product uses
(:class:`tskd.teacher.prompted.BoxPredictor`: scale to [0, 1], longest side to 256, zero padding;
encoder once per image, decoder per box). 20 images spread over the set (every 33rd file name).
Measured 2026-12-06 (cpu-2c): mean Dice 0.942, minimum 0.839; the encoder takes about 2-6 s per
image on two cores depending on load, so this test takes 40-120 s.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tests.conftest import shared_dataset

from tskd.preprocess.prompt import box_from_mask
from tskd.teacher.checkpoints import load_pretrained_segmenter
from tskd.teacher.prompted import BoxPredictor


def _hc18_pairs(count: int):
    root = shared_dataset("hc18")
    images = sorted((root / "images").glob("*.png"))
    for path in images[:: len(images) // count][:count]:
        image = np.asarray(Image.open(path).convert("L"))
        mask = np.asarray(Image.open(root / "masks" / path.name))
        yield image, (mask[..., 0] if mask.ndim == 3 else mask) > 127


@pytest.mark.package_index  # litemedsam_checkpoint: fetched through 'tskd foundation get' once per clone
def test_box_prompted_zero_shot_dice_on_hc18(litemedsam_checkpoint):
    model = load_pretrained_segmenter(litemedsam_checkpoint, input_size=256, num_classes=2)
    predictor = BoxPredictor(model)
    dice = []
    for image, truth in _hc18_pairs(20):
        predictor.set_image(image)
        mask = predictor.predict(box_from_mask(truth))
        assert mask.shape == truth.shape and mask.dtype == bool
        dice.append(2.0 * (mask & truth).sum() / (mask.sum() + truth.sum()))
    assert len(dice) == 20
    assert np.mean(dice) >= 0.93, f"mean Dice {np.mean(dice):.3f} (per image {np.round(dice, 3).tolist()})"
    assert np.min(dice) >= 0.75
