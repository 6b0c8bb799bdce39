"""Latent paths and prior samples."""

from __future__ import annotations

import numpy as np
import pytest

from service.latent import interpolate, sample_prior


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_paths_start_and_end_at_the_given_points(method):
    start, end = np.random.default_rng(0).standard_normal((2, 16), dtype=np.float32)
    path = interpolate(start, end, 5, method)
    assert path.shape == (5, 16)
    assert path.dtype == np.float32
    np.testing.assert_allclose(path[0], start, atol=1e-5)
    np.testing.assert_allclose(path[-1], end, atol=1e-5)


def test_linear_is_evenly_spaced():
    path = interpolate(np.zeros(3, np.float32), np.full(3, 4.0, np.float32), 5, "linear")
    np.testing.assert_allclose(path[:, 0], [0.0, 1.0, 2.0, 3.0, 4.0])


def test_slerp_keeps_the_norm_for_equal_norms():
    start, end = np.array([3.0, 0.0], np.float32), np.array([0.0, 3.0], np.float32)
    path = interpolate(start, end, 7, "slerp")
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), np.full(7, 3.0), atol=1e-5)
    np.testing.assert_allclose(path[3], np.array([3.0, 3.0]) / 2**0.5, atol=1e-5)


def test_slerp_of_parallel_vectors_is_linear():
    start = np.array([1.0, 1.0], np.float32)
    np.testing.assert_allclose(interpolate(start, 2 * start, 3, "slerp")[1], 1.5 * start)


def test_prior_samples_depend_only_on_the_seed():
    assert sample_prior(4, 8, seed=3).shape == (4, 8)
    np.testing.assert_array_equal(sample_prior(4, 8, seed=3), sample_prior(4, 8, seed=3))
    assert not np.array_equal(sample_prior(4, 8, seed=3), sample_prior(4, 8, seed=4))
