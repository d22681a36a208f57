"""LiteMedSAM's official weights segment real HC18 ultrasound from a box, with no training.

The boxes are the reference masks' bounding boxes; the path is the one the product uses
(:class:`tskd.teacher.prompted.BoxPredictor`: scale to [0, 1], longest side to 256, zero padding;
encoder once per image, decoder per box). 10 images spread over the set (every 67th file name).
Measured 2026-12-06 (cpu-2c): mean Dice 0.939, minimum 0.839 (per image 0.839, 0.93, 0.919, 0.969,
0.953, 0.955, 0.965, 0.944, 0.964, 0.956); with 20 images (every 33rd) the mean was 0.942, the same
minimum. The encoder takes about 3 s of CPU per image (one thread), so this test takes 30-60 s.
"""

from __future__ import annotations

import numpy as np
import pytest
from tests.real_data import hc18_pairs

from tskd.preprocess.prompt import box_from_mask
from tskd.teacher.checkpoints import load_pretrained_segmenter
from tskd.teacher.prompted import BoxPredictor


@pytest.mark.package_index  # litemedsam_checkpoint: fetched through 'tskd foundation get' once per clone
def test_box_prompted_zero_shot_dice_on_hc18(litemedsam_checkpoint):
    model = load_pretrained_segmenter(litemedsam_checkpoint, input_size=256, num_classes=2)
    predictor = BoxPredictor(model)
    dice = []
    for image, truth in hc18_pairs(10):
        predictor.set_image(image)
        mask = predictor.predict(box_from_mask(truth))
        assert mask.shape == truth.shape and mask.dtype == bool
        dice.append(2.0 * (mask & truth).sum() / (mask.sum() + truth.sum()))
    assert len(dice) == 10
    assert np.mean(dice) >= 0.93, f"mean Dice {np.mean(dice):.3f} (per image {np.round(dice, 3).tolist()})"
    assert np.min(dice) >= 0.75
