"""A package for the inference tests; one thread for the tiny models."""

from __future__ import annotations

import pytest
import torch

from tests.runtime.packages import make_package


@pytest.fixture(autouse=True, scope="package")
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def axis1_package(tmp_path_factory):
    """unet_tiny, labels 0 (background), 1 (liver), 4 (tumour), input 32, slice axis 1."""
    return make_package(tmp_path_factory.mktemp("inference_pkg") / "package", slice_axis=1, seed=2)
