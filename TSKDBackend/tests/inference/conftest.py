"""A package for the inference tests; one thread for the tiny models."""

from __future__ import annotations

import pytest

from tests.conftest import one_torch_thread
from tests.runtime.packages import make_package


@pytest.fixture(autouse=True, scope="package")
def single_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def axis1_package(tmp_path_factory):
    """unet_tiny, labels 0 (background), 1 (liver), 4 (tumour), input 32, slice axis 1."""
    return make_package(tmp_path_factory.mktemp("inference_pkg") / "package", slice_axis=1, seed=2)
