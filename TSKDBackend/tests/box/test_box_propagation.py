"""Propagating a box through a volume's slices (tskd.runtime.box_propagation) with a predictor that
knows the truth: it returns the bright pixels of the slice inside the box, as a perfect SAM would."""

from __future__ import annotations

import numpy as np
import pytest

from tskd.preprocess.prompt import box_from_mask
from tskd.runtime.box_propagation import PropagationSettings, check_box, propagate_box, segment_slice


class BrightInBox:
    """``predict(box)``: the slice's pixels above 0.5 inside the box (rounded outwards)."""

    def __init__(self):
        self.images = 0

    def set_image(self, image):
        self.image = np.asarray(image)
        self.images += 1

    def predict(self, box):
        x1, y1, x2, y2 = box
        inside = np.zeros(self.image.shape, dtype=bool)
        inside[int(np.floor(y1)): int(np.ceil(y2)) + 1, int(np.floor(x1)): int(np.ceil(x2)) + 1] = True
        return (self.image > 0.5) & inside


def ellipsoid(shape=(21, 40, 50), centre=(10, 20, 25), radii=(7, 9, 12)):
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return (((k - centre[0]) / radii[0]) ** 2 + ((j - centre[1]) / radii[1]) ** 2
            + ((i - centre[2]) / radii[2]) ** 2 <= 1).astype(np.float32)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_one_box_on_the_middle_slice_recovers_the_whole_object(axis):
    volume = ellipsoid()
    middle = [10, 20, 25][axis]
    truth_slice = np.take(volume, middle, axis=axis) > 0.5
    predictor = BrightInBox()
    seen = []
    result = propagate_box(predictor, volume, box_from_mask(truth_slice), middle, axis,
                           progress=lambda done, total: seen.append((done, total)))
    assert np.array_equal(result.mask, volume > 0.5)
    assert result.stopped == {"up": "vanished", "down": "vanished"}
    extent = np.flatnonzero((volume > 0.5).any(axis=tuple(a for a in range(3) if a != axis)))
    assert sorted(result.slices) == list(range(extent[0], extent[-1] + 1))
    assert result.slices[0] == middle and len(result.areas) == len(result.slices)
    # every slice segmented once, plus one past each end of the object where the mask vanished
    assert predictor.images == len(result.slices) + 2 == len(seen)
    assert seen[-1] == (len(seen), volume.shape[axis])


def test_area_jump_stops_the_walk_before_a_neighbour_is_swallowed():
    volume = ellipsoid()
    volume[14:, :, :] = 1.0  # from slice 14 on, everything is bright: the mask would fill its box
    middle = box_from_mask(volume[10] > 0.5)
    result = propagate_box(BrightInBox(), volume, middle, 10, 0, settings=PropagationSettings(max_area_growth=1.5))
    assert result.stopped["up"] == "area jump" and max(result.slices) == 13
    assert not result.mask[14:].any()
    assert result.stopped["down"] == "vanished"


def test_walk_reaches_the_end_of_the_volume_and_can_be_cancelled():
    volume = np.zeros((6, 20, 20), dtype=np.float32)
    volume[:, 5:15, 5:15] = 1.0
    result = propagate_box(BrightInBox(), volume, [5, 5, 14, 14], 2, 0)
    assert result.stopped == {"up": "end", "down": "end"} and sorted(result.slices) == list(range(6))
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 2

    result = propagate_box(BrightInBox(), volume, [5, 5, 14, 14], 2, 0, cancelled=cancelled)
    assert result.stopped["up"] == "cancelled" and result.stopped["down"] == "cancelled"
    assert 1 <= len(result.slices) < 6 and result.mask.sum() == 100 * len(result.slices)


def test_an_empty_first_slice_gives_an_empty_mask():
    volume = np.zeros((5, 10, 10), dtype=np.float32)
    result = propagate_box(BrightInBox(), volume, [1, 1, 8, 8], 2, 0)
    assert not result.mask.any() and result.slices == [] and result.stopped == {"up": "vanished", "down": "vanished"}


def test_segment_slice_writes_only_that_slice():
    volume = ellipsoid()
    mask = segment_slice(BrightInBox(), volume, [0, 0, 49, 20], 20, axis=1)
    expected = np.zeros(volume.shape, dtype=bool)
    expected[:, 20, :] = volume[:, 20, :] > 0.5
    assert np.array_equal(mask, expected)


def test_next_box_margin():
    mask = np.zeros((50, 50), dtype=bool)
    mask[10:20, 20:40] = True  # 20 wide: 10% is 2 pixels
    np.testing.assert_array_equal(PropagationSettings(margin_fraction=0.1, min_margin=0).next_box(mask), [18, 8, 41, 21])
    np.testing.assert_array_equal(PropagationSettings(margin_fraction=0.0, min_margin=3).next_box(mask), [17, 7, 42, 22])
    assert PropagationSettings().next_box(np.zeros((5, 5), dtype=bool)) is None
    with pytest.raises(ValueError, match="max_area_growth"):
        PropagationSettings(max_area_growth=1.0)


@pytest.mark.parametrize(
    "box, message",
    [([1, 2, 3], "four numbers"), ([1, 2, 3, float("nan")], "four numbers"), ([10, 5, 4, 20], "is empty"),
     ([60, 5, 80, 20], "outside the image of 50 x 30"), ([-20, -9, -1, -1], "outside")],
)
def test_check_box_errors(box, message):
    with pytest.raises(ValueError, match=message):
        check_box(box, 30, 50)
    np.testing.assert_array_equal(check_box([-5, 2, 70, 20], 30, 50), [-5, 2, 70, 20])  # partly outside is fine
