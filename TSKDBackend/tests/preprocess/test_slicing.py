from __future__ import annotations

import numpy as np
import pytest

from tskd.preprocess import choose_slice_axis, slices_along, stack_slices


@pytest.mark.parametrize(
    "spacing, size, expected",
    [
        ((1.0, 1.0, 2.5), None, 0),  # axial CT: coarse k
        ((1.0, 1.0, 1.0), None, 0),  # isotropic: tie goes to k
        ((0.8, 3.0, 0.8), None, 1),  # coarse j
        ((4.0, 1.0, 1.0), None, 2),  # coarse i
        ((1.0, 3.0, 3.0), None, 0),  # tie between k and j -> k
        ((1.0, 1.0, 1.004), None, 0),  # within 1 % counts as a tie
        ((1.0, 1.0, 1.0), (64, 1, 64), 1),  # a single-voxel axis wins
        ((0.5, 0.5), None, 0),  # 2D
    ],
)
def test_choose_slice_axis(spacing, size, expected):
    assert choose_slice_axis(spacing, size) == expected


def test_choose_slice_axis_rejects_bad_spacing():
    with pytest.raises(ValueError, match="positive"):
        choose_slice_axis((1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="2 or 3"):
        choose_slice_axis((1.0,))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_round_trip_and_order(axis):
    volume = np.arange(4 * 5 * 6, dtype=np.int32).reshape(4, 5, 6)
    slices = slices_along(volume, axis)
    assert np.shares_memory(slices, volume)  # a view
    rest = [s for a, s in enumerate(volume.shape) if a != axis]
    assert slices.shape == (volume.shape[axis], *rest)
    # slice n is the volume indexed at n along the axis, other axes in array order
    for n in range(volume.shape[axis]):
        np.testing.assert_array_equal(slices[n], np.take(volume, n, axis=axis))
    back = stack_slices(slices.copy(), axis, volume.shape)
    np.testing.assert_array_equal(back, volume)
    assert back.flags.c_contiguous


def test_2d_image_is_one_slice():
    image = np.arange(12).reshape(3, 4)
    slices = slices_along(image, 0)
    assert slices.shape == (1, 3, 4)
    np.testing.assert_array_equal(stack_slices(slices, 0, (3, 4)), image)


def test_stack_slices_checks_shapes():
    with pytest.raises(ValueError, match="do not fill"):
        stack_slices(np.zeros((4, 5, 6)), 1, (4, 5, 6))
    with pytest.raises(ValueError, match="2D image"):
        stack_slices(np.zeros((2, 3, 4)), 0, (3, 4))
