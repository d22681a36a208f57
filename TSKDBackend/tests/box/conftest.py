"""Fixtures of the box-to-mask tests: LiteMedSAM (real weights) and its exported ONNX box model."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def litemedsam_model(litemedsam_checkpoint):
    """The official LiteMedSAM as a torch segmenter (shared by the tests of this folder; not to be modified)."""
    from tskd.teacher.checkpoints import load_pretrained_segmenter

    return load_pretrained_segmenter(litemedsam_checkpoint, input_size=256, num_classes=2).eval()


@pytest.fixture(scope="session")
def litemedsam_box_model(litemedsam_checkpoint) -> Path:
    """LiteMedSAM exported as ONNX encoder + decoder graphs (``export_box_model``, about 10-40 s on two
    cores): the export ``tskd segment-box --model litemedsam`` keeps in the suite's test home, made once
    per clone and shared with the service's and the Slicer module's box tests (one export instead of one
    more per test worker)."""
    from tests.conftest import TEST_HOME

    from tskd.inference.box_segment import zero_shot_box_model

    return zero_shot_box_model(str(litemedsam_checkpoint), cache_dir=TEST_HOME / "box_models", name="litemedsam")
