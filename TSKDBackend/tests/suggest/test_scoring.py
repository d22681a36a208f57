"""Per-slice scores: normalised entropy, teacher-student disagreement, and a volume scored through
the same preprocessing as :func:`tskd.runtime.segment_volume`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tskd.preprocess import NormalizationSpec
from tskd.suggest import (
    SuggestConfig,
    combine_scores,
    normalized_entropy,
    score_volume,
    softmax,
    total_variation_distance,
)


class FakeModel:
    """A SliceModel whose logits depend on the input: confident where it is far from 0.5, uncertain
    where it is near (so the entropy of a slice follows its intensities)."""

    def __init__(self, *, size: int = 16, classes: int = 3, axis: int = 0, gain: float = 20.0, flip: bool = False):
        self.input_size = size
        self.num_classes = classes
        self.label_values = list(range(classes))
        self.normalization = NormalizationSpec(mode="none")
        self.slice_axis = axis
        self.gain = gain
        self.flip = flip
        self.calls = []

    def logits(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(batch.shape)
        x = batch[:, 0]
        if self.flip:
            x = 1.0 - x
        d = self.gain * (x - 0.5)
        out = np.zeros((batch.shape[0], self.num_classes) + x.shape[1:], dtype=np.float32)
        out[:, 0] = -d
        out[:, 1] = d
        return out


def test_entropy_is_zero_when_certain_and_one_when_uniform():
    certain = np.zeros((1, 4, 8, 8), np.float32)
    certain[:, 2] = 1.0
    uniform = np.full((1, 4, 8, 8), 0.25, np.float32)
    half = np.concatenate([certain[..., :4], uniform[..., 4:]], axis=-1)
    values = normalized_entropy(np.concatenate([certain, uniform, half]))
    np.testing.assert_allclose(values, [0.0, 1.0, 0.5], atol=1e-6)
    with pytest.raises(ValueError, match="K >= 2"):
        normalized_entropy(np.ones((1, 1, 4, 4)))


def test_softmax_of_large_logits_is_finite_and_sums_to_one():
    p = softmax(np.array([[[[1000.0]], [[0.0]], [[-1000.0]]]]))
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert p[0, 0, 0, 0] == pytest.approx(1.0)


def test_disagreement_is_the_mean_total_variation_distance():
    a = np.zeros((1, 3, 4, 4), np.float32)
    a[:, 0] = 1.0
    b = a.copy()
    b[..., :2] = 0.0
    b[:, 1, :, :2] = 1.0  # certain of another class on half the pixels
    c = np.full_like(a, 1 / 3)  # uniform everywhere
    values = total_variation_distance(np.concatenate([a, a, a]), np.concatenate([a, b, c]))
    np.testing.assert_allclose(values, [0.0, 0.5, 2 / 3], atol=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        total_variation_distance(a, a[:, :2])


def test_combined_score_weights_the_teacher_term():
    entropy, disagreement = np.array([0.2, 0.4]), np.array([0.8, 0.0])
    np.testing.assert_allclose(combine_scores(entropy, disagreement, 0.5), [0.5, 0.2])
    np.testing.assert_allclose(combine_scores(entropy, disagreement, 0.0), entropy)
    np.testing.assert_allclose(combine_scores(entropy, None, 0.5), entropy)


def test_a_volume_scores_its_uncertain_slices_highest():
    rng = np.random.default_rng(0)
    volume = rng.choice([0.0, 1.0], size=(6, 20, 24)).astype(np.float32)  # confident everywhere
    volume[3] = 0.5 + rng.normal(0, 0.01, (20, 24))  # near the decision boundary: uncertain
    student = FakeModel(size=16)
    scores = score_volume(student, volume, config=SuggestConfig(batch_size=4))
    assert scores.num_slices == 6 and scores.axis == 0 and scores.disagreement is None
    assert int(np.argmax(scores.score)) == 3
    assert scores.entropy[3] > 0.5 and np.delete(scores.entropy, 3).max() < 0.2
    assert student.calls == [(4, 1, 16, 16), (2, 1, 16, 16)]  # batches, resized to the input size
    along_1 = score_volume(FakeModel(size=16, axis=1), volume)
    assert along_1.num_slices == 20 and along_1.axis == 1


def test_a_teacher_that_sees_the_opposite_raises_the_disagreement():
    volume = np.zeros((4, 16, 16), np.float32)
    volume[:, 4:12, 4:12] = 1.0
    student = FakeModel(size=16)
    agreeing = score_volume(student, volume, teacher=FakeModel(size=32))
    opposite = score_volume(student, volume, teacher=FakeModel(size=32, flip=True))
    np.testing.assert_allclose(agreeing.disagreement, 0.0, atol=0.05)
    assert (opposite.disagreement > 0.9).all()
    assert (opposite.score > agreeing.score + 0.4).all()
    with pytest.raises(ValueError, match="label values"):
        score_volume(student, volume, teacher=FakeModel(classes=4))


def test_a_2d_image_is_one_slice():
    image = np.full((20, 30), 0.5, np.float32)
    scores = score_volume(FakeModel(size=16, axis=2), image)
    assert scores.num_slices == 1 and scores.entropy[0] > 0.9


def test_importing_the_package_loads_no_torch():
    code = "import sys, tskd.suggest, tskd.cli.suggest_cmd; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, check=True)
    assert out.stdout.decode("utf-8").strip() == "False"


class _RecordingStacked:
    """A student that sees each slice between its neighbours (``context_slices`` 1) and records its inputs."""

    input_size = 8
    label_values = [0, 1]
    num_classes = 2
    normalization = NormalizationSpec(mode="none")
    slice_axis = 0
    context_slices = 1

    def __init__(self) -> None:
        self.seen = []

    def logits(self, batch: np.ndarray) -> np.ndarray:
        self.seen.append(np.asarray(batch)[:, :, 0, 0].copy())
        return np.zeros((batch.shape[0], 2, 8, 8), np.float32)


def test_a_stacked_student_is_scored_on_each_slice_between_its_neighbours():
    from tskd.suggest.scoring import score_volume

    volume = np.repeat(np.arange(5, dtype=np.float32), 64).reshape(5, 8, 8)  # slice k holds k
    student = _RecordingStacked()
    scores = score_volume(student, volume)
    seen = np.concatenate(student.seen)
    np.testing.assert_array_equal(seen, [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4]])
    assert scores.num_slices == 5
