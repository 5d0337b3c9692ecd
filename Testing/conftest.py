"""Shared fixtures: paths to the optional real data beside the repository, small images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lesionseg import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"


@pytest.fixture
def shared_data() -> Path:
    """The ../shared/data folder; tests using it skip when it is absent."""
    if not DATA.is_dir():
        pytest.skip("../shared/data is not present beside the repository")
    return DATA


def rotation_z(deg: float) -> np.ndarray:
    """3x3 rotation about the k axis by ``deg`` degrees."""
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])


@pytest.fixture
def oblique_image() -> Image:
    """A (6, 12, 16) int16 image, anisotropic spacing, non-zero origin, oblique direction."""
    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 1000, size=(6, 12, 16)).astype(np.int16)
    tilt = rotation_z(25.0) @ np.array([[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]])
    return Image(arr, (0.7, 0.9, 2.5), (-120.5, 33.25, 410.0), tilt)


@pytest.fixture(scope="module")
def shipped(request):
    """The shipped model of the test module's ``SHIPPED_METHOD``, built on the CPU with 2 torch threads (the CI
    machine's cores); the module's tests skip where that method's weights are not installed."""
    import torch

    import lesionseg
    from lesionseg.modelfolder import find_model_folder

    method = request.module.SHIPPED_METHOD
    if find_model_folder(method) is None:
        pytest.skip(f"no {method} weights installed")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield lesionseg.build(method, device="cpu")
    torch.set_num_threads(threads)


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (tiny networks run fastest so and do not stall beside other jobs); the
    thread count is given back afterwards. Modules use it with ``pytest.mark.usefixtures``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
