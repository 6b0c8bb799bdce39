"""Paths through and samples from the VAE's latent space."""

from __future__ import annotations

from typing import Literal

import torch

Method = Literal["linear", "slerp"]


def interpolate(start: torch.Tensor, end: torch.Tensor, steps: int, method: Method) -> torch.Tensor:
    """`steps` evenly spaced points from `start` to `end` (both included), as steps x dim.

    `slerp` follows the great circle between the two vectors, scaling the norm linearly, which
    keeps intermediate points at the typical radius of Gaussian samples instead of cutting
    through the low-density centre; nearly parallel vectors fall back to `linear`.
    """
    t = torch.linspace(0, 1, steps, dtype=start.dtype).unsqueeze(1)
    start_norm, end_norm = start.norm(), end.norm()
    cosine = torch.dot(start, end) / (start_norm * end_norm).clamp_min(1e-12)
    angle = torch.arccos(cosine.clamp(-1, 1))
    if method == "linear" or angle < 1e-4:
        return (1 - t) * start + t * end
    direction = (
        torch.sin((1 - t) * angle) * start / start_norm + torch.sin(t * angle) * end / end_norm
    ) / torch.sin(angle)
    return direction * ((1 - t) * start_norm + t * end_norm)


def sample_prior(count: int, dim: int, seed: int) -> torch.Tensor:
    """`count` draws from N(0, I), the same for the same seed on every machine (CPU generator)."""
    return torch.randn(count, dim, generator=torch.Generator().manual_seed(seed))
