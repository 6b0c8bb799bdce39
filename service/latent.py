"""Paths through and samples from the VAE's latent space."""

from __future__ import annotations

from typing import Literal

import numpy as np

Method = Literal["linear", "slerp"]


def interpolate(start: np.ndarray, end: np.ndarray, steps: int, method: Method) -> np.ndarray:
    """`steps` evenly spaced points from `start` to `end` (both included), as steps x dim.

    `slerp` follows the great circle between the two vectors, scaling the norm linearly, which
    keeps intermediate points at the typical radius of Gaussian samples instead of cutting
    through the low-density centre; nearly parallel vectors fall back to `linear`.
    """
    t = np.linspace(0, 1, steps, dtype=start.dtype)[:, None]
    start_norm, end_norm = np.linalg.norm(start), np.linalg.norm(end)
    cosine = np.dot(start, end) / max(start_norm * end_norm, 1e-12)
    angle = np.arccos(np.clip(cosine, -1, 1))
    if method == "linear" or angle < 1e-4:
        return (1 - t) * start + t * end
    direction = (
        np.sin((1 - t) * angle) * start / start_norm + np.sin(t * angle) * end / end_norm
    ) / np.sin(angle)
    return (direction * ((1 - t) * start_norm + t * end_norm)).astype(start.dtype)


def sample_prior(count: int, dim: int, seed: int) -> np.ndarray:
    """`count` draws from N(0, I) as float32, the same for the same seed on every machine and
    with every backend (numpy's PCG64 generator)."""
    return np.random.default_rng(seed).standard_normal((count, dim), dtype=np.float32)
