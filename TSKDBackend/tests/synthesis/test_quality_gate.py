from __future__ import annotations

import logging

import numpy as np
import pytest

from tskd.synthesis.config import QualityGateConfig
from tskd.synthesis.quality_gate import QualityGate, normalised_entropy, thumbnails


def _confident(n, k=2, size=16):
    probs = np.full((n, k, size, size), 0.02 / (k - 1), np.float32)
    probs[:, 0] = 0.98
    return probs


def test_gate_drops_duplicates_degenerate_and_uncertain_and_keeps_good(blobs, caplog):
    train, _ = blobs(20, 32, seed=1)
    fresh, _ = blobs(4, 32, seed=2)  # new discs: similar kind of image, not copies
    rng = np.random.default_rng(0)
    exact = train[3:4].copy()
    near = train[7:8] * 1.3 + 0.2 + rng.normal(0, 0.05, train[7:8].shape).astype(np.float32)  # contrast/brightness change + noise
    blank = np.zeros_like(exact) + 0.01 * rng.normal(size=exact.shape).astype(np.float32)
    nan = fresh[:1].copy()
    nan[0, 0, 3, 3] = np.nan
    saturated = np.full_like(exact, 3.0)
    saturated[..., :4, :] = -3.0
    uncertain = fresh[1:2]
    images = np.concatenate([fresh, exact, near, blank, nan, saturated, uncertain])
    probs = _confident(len(images), size=32)
    probs[-1] = 0.5  # the teacher cannot tell: uniform over two classes

    gate = QualityGate(QualityGateConfig(), train, clip=3.0)
    with caplog.at_level(logging.INFO, logger="tskd.synthesis.quality_gate"):
        result = gate.evaluate(images, probs)
    reasons = [d.reason for d in result.decisions]
    assert reasons == ["", "", "", "", "duplicate", "duplicate", "degenerate", "degenerate", "degenerate", "uncertain"]
    assert result.keep.tolist() == [True] * 4 + [False] * 6
    assert result.decisions[4].similarity == pytest.approx(1.0, abs=1e-5)
    assert max(d.similarity for d in result.decisions[:4]) < 0.97
    assert result.decisions[-1].entropy == pytest.approx(1.0)
    assert result.summary() == {"kept": 4, "dropped": {"duplicate": 2, "degenerate": 3, "uncertain": 1}}
    assert "kept 4 of 10" in caplog.text

    gate.evaluate(fresh[:2])  # without teacher probabilities the uncertainty check is skipped
    assert gate.summary() == {"kept": 6, "dropped": {"duplicate": 2, "degenerate": 3, "uncertain": 1}}


def test_checks_can_be_switched_off(blobs):
    train, _ = blobs(5, 16)
    gate = QualityGate(QualityGateConfig(duplicate_threshold=None, max_entropy=None), train)
    result = gate.evaluate(train, np.full((5, 2, 16, 16), 0.5, np.float32))
    assert result.keep.all() and np.isnan(result.decisions[0].similarity)


def test_thumbnails_are_correlations():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, 64, 64)).astype(np.float32)
    thumbs = thumbnails(images, 32)
    assert thumbs.shape == (3, 1024)
    np.testing.assert_allclose(thumbs.norm(dim=1).numpy(), 1.0, atol=1e-5)
    scaled = thumbnails(images[:1] * 5 - 2, 32)
    assert float(scaled @ thumbs[0]) == pytest.approx(1.0, abs=1e-5)
    assert float(thumbnails(np.ones((1, 8, 8), np.float32), 4).abs().sum()) == 0.0


def test_entropy_is_normalised_by_class_count():
    uniform = np.full((1, 4, 2, 2), 0.25)
    certain = np.zeros((1, 4, 2, 2))
    certain[:, 2] = 1
    np.testing.assert_allclose(normalised_entropy(np.concatenate([uniform, certain])), [1.0, 0.0], atol=1e-6)


def test_bad_teacher_probabilities_shape(blobs):
    images, _ = blobs(2, 16)
    with pytest.raises(ValueError, match="teacher_probs"):
        QualityGate(QualityGateConfig()).evaluate(images, np.zeros((3, 2, 16, 16)))
