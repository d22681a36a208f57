"""A synthetic expansion that stops half-way and resumes gives the transfer set of one that does not."""

from __future__ import annotations

import numpy as np
import torch

from tskd.synthesis.config import QualityGateConfig
from tskd.synthesis.model import build_diffusion_model
from tskd.synthesis.quality_gate import QualityGate
from tskd.synthesis.sampler import iter_generate
from tskd.data.transfer_set import TransferSet, TransferSetWriter


class _Crash(Exception):
    pass


def _fake_teacher(images: np.ndarray) -> np.ndarray:
    """Two-class probabilities; unsure (flat) on images whose mean is negative."""
    x = images[:, 0].astype(np.float64)
    sharpness = np.where(x.mean(axis=(1, 2)) > 0, 8.0, 0.05)[:, None, None]
    fg = 1 / (1 + np.exp(-sharpness * x))
    return np.stack([1 - fg, fg], axis=1).astype(np.float32)


def _expand(folder, model, gate, candidates, crash_after_batches=None):
    writer = TransferSetWriter(folder, image_size=16, num_classes=2, shard_size=3)
    seeds = writer.missing_seeds(candidates, model=model.model_id)
    for number, batch in enumerate(iter_generate(model, seeds, batch_size=2), start=1):
        probs = _fake_teacher(batch.images)
        result = gate.evaluate(batch.images, probs)
        for i, decision in enumerate(result.decisions):
            if decision.keep:
                writer.add(batch.images[i], probs[i], source="synthetic", seed=batch.seeds[i], model=model.model_id)
            else:
                writer.reject(batch.seeds[i], model=model.model_id, reason=decision.reason)
        if number == crash_after_batches:
            raise _Crash  # the writer is dropped without flushing: its buffer is lost
    writer.close()
    return len(seeds)


def test_interrupted_generation_resumes_to_the_same_transfer_set(tmp_path, tiny_config):
    torch.manual_seed(0)
    model = build_diffusion_model(tiny_config.replace(sampling_steps=3))
    model.model_id = "tskd-test"
    gate = QualityGate(QualityGateConfig(max_entropy=0.5, duplicate_threshold=None), clip=model.intensity.clip)
    candidates = range(100, 114)

    assert _expand(tmp_path / "whole", model, gate, candidates) == 14
    try:
        _expand(tmp_path / "resumed", model, gate, candidates, crash_after_batches=4)
    except _Crash:
        pass
    partial = TransferSet(tmp_path / "resumed")
    assert 0 < len(partial) < len(TransferSet(tmp_path / "whole"))
    remaining = _expand(tmp_path / "resumed", model, gate, candidates)
    assert remaining < 14  # what was flushed before the crash is not made again

    whole, resumed = TransferSet(tmp_path / "whole"), TransferSet(tmp_path / "resumed")
    summary = gate.summary()
    assert summary["dropped"]["uncertain"] > 0 and summary["kept"] > 0
    assert sorted(whole.seeds()) == sorted(resumed.seeds())
    assert len(whole) == len(resumed) < 14
    by_seed = {item["seed"]: i for i, item in enumerate(resumed.provenance(i) for i in range(len(resumed)))}
    for i in range(len(whole)):
        a = whole[i]
        b = resumed[by_seed[a.provenance["seed"]]]
        np.testing.assert_allclose(a.image, b.image, atol=5e-3)
        np.testing.assert_allclose(a.soft, b.soft, atol=5e-3)
        assert b.provenance["model"] == "tskd-test"
