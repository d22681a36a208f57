"""Packages shared by the runtime tests (written once per session: export takes about a second)."""

from __future__ import annotations

import pytest

from tests.conftest import one_torch_thread
from tests.runtime.packages import make_package


@pytest.fixture(autouse=True, scope="package")
def single_thread():
    """Tiny models run faster on one thread than on two contended ones; restored afterwards."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def package_014(tmp_path_factory):
    """unet_tiny, labels 0, 1, 4, input 32, slice axis 0."""
    return make_package(tmp_path_factory.mktemp("pkg014") / "package")


@pytest.fixture(scope="session")
def package_axis1(tmp_path_factory):
    """unet_tiny, labels 0, 1, 4, input 32, slice axis 1 (coronal-like slices)."""
    # seed 7: the untrained student predicts all three classes on the test volumes (about 0.44, 0.51, 0.05
    # of the voxels), so label mapping and resizing are checked for every class
    return make_package(tmp_path_factory.mktemp("pkg_axis1") / "package", slice_axis=1, seed=7)
