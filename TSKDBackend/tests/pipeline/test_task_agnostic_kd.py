"""The task-agnostic KD baseline's frozen foundation model: its encoder is frozen and reads the
embedding cache, so a benchmark pays for each image's embedding once (issue 31)."""

from __future__ import annotations

import pytest
import torch

from tskd.pipeline.comparison.methods.task_agnostic_kd import frozen_foundation_model
from tskd.runconfig import resolve_config


@pytest.mark.package_index
def test_the_frozen_litemedsam_encodes_each_image_once(tmp_path, litemedsam_checkpoint):
    config = resolve_config(preset="cpu-small", overrides={
        "teacher": {"base": str(litemedsam_checkpoint), "embedding_cache": str(tmp_path / "cache")}})
    frozen = frozen_foundation_model(config, num_classes=2)
    assert frozen.encoder_frozen and frozen.embedding_cache is not None
    assert frozen.embedding_cache.folder.parent == tmp_path / "cache"

    images = torch.rand(2, 1, frozen.input_size, frozen.input_size)
    first = frozen.image_embeddings(images)
    again = frozen.image_embeddings(images)
    assert (frozen.embedding_cache.misses, frozen.embedding_cache.hits) == (2, 2)
    assert first.shape[:2] == (2, frozen.embedding_dim)  # LiteMedSAM at 256 px: a 64 x 64 grid
    assert torch.equal(first, again)


def test_without_foundation_weights_nothing_is_cached(tmp_path):
    config = resolve_config(preset="cpu-small", overrides={
        "teacher": {"base": "none", "embedding_cache": str(tmp_path / "cache")}})
    frozen = frozen_foundation_model(config, num_classes=2)
    assert frozen.embedding_cache is None
    assert not (tmp_path / "cache").exists()
