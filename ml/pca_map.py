"""The 2-D PCA map of the training set that feature vectors are placed on (numpy only).

The map is fitted once by the training script on training images (the first 10,000 of the
training split) and stored in the model's card: mean, two principal axes, and a class-balanced
sample of training points to draw. `/embed` projects its inputs onto that map, and the report's
PCA figures (`ml.figures.plot_pca_maps`) project the test images onto the same one, so the two
agree, axes and signs included.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def fit_pca_map(
    vectors: np.ndarray, labels: np.ndarray, points_per_class: int = 150, seed: int = 0
) -> dict[str, Any]:
    """Two principal axes of `vectors`, plus a class-balanced sample of projected points."""
    mean = vectors.mean(0)
    _, singular_values, axes = np.linalg.svd(vectors - mean, full_matrices=False)
    components = axes[:2]
    # Fix each axis's sign so that refits give the same picture.
    signs = np.sign(components[np.arange(2), np.abs(components).argmax(1)])
    components = components * signs[:, None]
    variance = singular_values**2
    coords = (vectors - mean) @ components.T
    rng = np.random.default_rng(seed)
    sample = np.concatenate(
        [
            rng.choice(np.flatnonzero(labels == c), points_per_class, replace=False)
            for c in np.unique(labels)
            if (labels == c).sum() >= points_per_class
        ]
    )
    return {
        "mean": np.round(mean, 6).tolist(),
        "components": np.round(components, 6).tolist(),
        "explained_variance_ratio": np.round(variance[:2] / variance.sum(), 4).tolist(),
        "points": np.round(coords[sample], 4).tolist(),
        "point_labels": labels[sample].tolist(),
    }


def project(vectors: np.ndarray, pca_map: dict[str, Any]) -> np.ndarray:
    """2-D coordinates of `vectors` on a map made by `fit_pca_map`."""
    return (vectors - np.asarray(pca_map["mean"])) @ np.asarray(pca_map["components"]).T
