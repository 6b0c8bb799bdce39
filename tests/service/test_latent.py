"""Latent paths and prior samples."""

from __future__ import annotations

import pytest
import torch

from service.latent import interpolate, sample_prior


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_paths_start_and_end_at_the_given_points(method):
    start, end = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    path = interpolate(start, end, 5, method)
    assert path.shape == (5, 16)
    assert torch.allclose(path[0], start, atol=1e-5)
    assert torch.allclose(path[-1], end, atol=1e-5)


def test_linear_is_evenly_spaced():
    path = interpolate(torch.zeros(3), torch.ones(3) * 4, 5, "linear")
    assert torch.allclose(path[:, 0], torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]))


def test_slerp_keeps_the_norm_for_equal_norms():
    start, end = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    path = interpolate(start, end, 7, "slerp")
    assert torch.allclose(path.norm(dim=1), torch.full((7,), 3.0), atol=1e-5)
    assert torch.allclose(path[3], torch.tensor([3.0, 3.0]) / 2**0.5, atol=1e-5)


def test_slerp_of_parallel_vectors_is_linear():
    start = torch.tensor([1.0, 1.0])
    assert torch.allclose(interpolate(start, 2 * start, 3, "slerp")[1], 1.5 * start)


def test_prior_samples_depend_only_on_the_seed():
    assert torch.equal(sample_prior(4, 8, seed=3), sample_prior(4, 8, seed=3))
    assert not torch.equal(sample_prior(4, 8, seed=3), sample_prior(4, 8, seed=4))
