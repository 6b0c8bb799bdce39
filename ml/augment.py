"""Augmentation applied to whole batches of N x 1 x 28 x 28 tensors (no per-sample Python)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror half of the images left-right (clothes are close to symmetric)."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Translate each image by up to `max_shift` pixels, filling with background (zero)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(
        n, 1, h, w + 2 * max_shift
    )
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, 1, h, w)
    return padded.gather(2, rows).gather(3, cols)


def random_erase(
    x: torch.Tensor, generator: torch.Generator, p: float = 0.3, max_size: int = 12
) -> torch.Tensor:
    """Blank a random rectangle (up to `max_size` pixels a side) in a fraction `p` of the images."""
    n, _, h, w = x.shape
    size_y = torch.randint(4, max_size + 1, (n,), generator=generator)
    size_x = torch.randint(4, max_size + 1, (n,), generator=generator)
    top = (torch.rand(n, generator=generator) * (h - size_y + 1)).long()
    left = (torch.rand(n, generator=generator) * (w - size_x + 1)).long()
    ys, xs = torch.arange(h)[None, :], torch.arange(w)[None, :]
    in_rows = (ys >= top[:, None]) & (ys < (top + size_y)[:, None])
    in_cols = (xs >= left[:, None]) & (xs < (left + size_x)[:, None])
    chosen = torch.rand(n, generator=generator) < p
    mask = (in_rows[:, :, None] & in_cols[:, None, :] & chosen[:, None, None])[:, None]
    return x.masked_fill(mask, 0.0)


AUGMENTATIONS = {"flip": random_flip, "shift": random_shift, "erase": random_erase}


def augment_batch(
    x: torch.Tensor, names: tuple[str, ...], generator: torch.Generator
) -> torch.Tensor:
    for name in names:
        x = AUGMENTATIONS[name](x, generator)
    return x
