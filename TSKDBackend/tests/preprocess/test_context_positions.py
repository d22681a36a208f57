"""The neighbours of a slice (2.5D input): one function for training and inference."""

import numpy as np
import pytest

from tskd.preprocess import context_positions


def test_positions_in_slice_order_clipped_at_the_ends():
    got = context_positions([0, 3, 5], 6, 2)
    np.testing.assert_array_equal(got, [[0, 0, 0, 1, 2], [1, 2, 3, 4, 5], [3, 4, 5, 5, 5]])
    np.testing.assert_array_equal(context_positions([2], 6, 0), [[2]])
    np.testing.assert_array_equal(context_positions([0], 1, 1), [[0, 0, 0]])  # a one-slice volume
    with pytest.raises(ValueError, match="context"):
        context_positions([0], 3, -1)
