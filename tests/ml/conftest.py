"""Fixtures for the training-side tests: synthetic IDX datasets written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.ml.synthetic import synthetic_images, write_idx


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full-size (60,000 / 10,000) Fashion-MNIST look-alike in the original file layout."""
    folder = tmp_path_factory.mktemp("synthetic-fmnist")
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 60_000), ("t10k", 10_000)):
        labels = rng.integers(0, 10, size=count).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", synthetic_images(labels, rng))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
    return folder
