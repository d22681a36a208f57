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
def litemedsam_box_model(litemedsam_model, tmp_path_factory) -> Path:
    """LiteMedSAM exported as ONNX encoder + decoder graphs (about 10-40 s on two cores)."""
    from tskd.export import export_box_model

    return export_box_model(litemedsam_model, tmp_path_factory.mktemp("box_model") / "litemedsam", name="litemedsam")
