"""Synthetic IDX files for tests that must not depend on the real dataset."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format (magic 0x0000080N, big-endian dimensions)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)
    return path


def synthetic_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Light-on-dark images whose bright bar position encodes the class, plus noise."""
    images = rng.integers(0, 40, size=(len(labels), 28, 28), dtype=np.uint8)
    for c in range(10):
        rows = labels == c
        images[rows, 2 + 2 * c : 5 + 2 * c, 4:24] = 220
    return images
