"""Fixtures for the service tests: a shared app with its lifespan running, and real images.

The checkpoints come from one setting (see `support.CHECKPOINT_DIR`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest

from ml.data import DatasetError, load_split, locate
from tests.service.support import make_settings, serving


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
async def client(anyio_backend: str) -> AsyncIterator[httpx.AsyncClient]:
    """One app with every model loaded, shared by the tests that do not change settings."""
    async with serving(make_settings()) as shared:
        yield shared


@pytest.fixture(scope="session")
def test_split() -> tuple[np.ndarray, np.ndarray]:
    """The real Fashion-MNIST test split: uint8 images N x 28 x 28 and labels N."""
    try:
        split = load_split(locate(), "test")
    except DatasetError as exc:
        pytest.skip(f"real Fashion-MNIST not available: {exc}")
    return split.images.numpy(), split.labels.numpy()


@pytest.fixture(scope="session")
def samples(test_split: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The first test image of classes 0, 1, 7 and 9 (T-shirt, trouser, sneaker, ankle boot):
    fixed picks keep the assertions deterministic."""
    images, labels = test_split
    picks = [int(np.flatnonzero(labels == c)[0]) for c in (0, 1, 7, 9)]
    return images[picks], labels[picks]
