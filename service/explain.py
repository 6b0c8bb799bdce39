"""Occlusion attributions: how much each pixel's neighbourhood makes a classifier give a class.

Pure numpy around the model's probability function, so it runs on whichever backend serves the
model: `Occlusion.inputs` gives the images to run (each image whole, then one copy per patch
position with that square set to the background), and `Occlusion.explain` turns the
probabilities of those images into one map per image: the drop in the class's probability when
a patch is hidden, averaged over the patches covering each pixel. Positive pixels support the
class, negative ones count against it.

Below it, the measure of how faithful a map is (the deletion curve): delete pixels, most
attributed first, and watch the class's probability fall. PATCH and STRIDE were chosen with it
(scripts/measure_explain.py; the README gives the figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ml.fashion_mnist import IMAGE_SIZE

BACKGROUND = 0.0  # Fashion-MNIST's background: what hidden and deleted pixels become
# 5x5 patches 4 pixels apart: 49 positions, 50 forward passes per image. On MyNet's deletion
# curves, patches of 3 every 2 pixels (197 passes) have a 6% smaller area; 4 every 4 (also 50
# passes) an 11% larger one.
PATCH = 5
STRIDE = 4


@dataclass(frozen=True)
class Attributions:
    class_ids: np.ndarray
    """N: the class each map explains."""
    probabilities: np.ndarray
    """N: the model's probability of that class for the whole image."""
    maps: np.ndarray
    """N x 28 x 28: the attribution of each pixel to that class."""


def patch_starts(patch: int, stride: int, side: int = IMAGE_SIZE) -> list[int]:
    """Where patches start along one axis: every `stride` pixels, and the last one moved to end
    at the edge, so that every pixel is covered."""
    starts = list(range(0, side - patch + 1, stride))
    if starts[-1] != side - patch:
        starts.append(side - patch)
    return starts


@dataclass(frozen=True)
class Occlusion:
    patch: int = PATCH
    stride: int = STRIDE

    @cached_property
    def masks(self) -> np.ndarray:
        """K x 28 x 28 booleans, one per patch position (row-major): the pixels it hides."""
        starts = patch_starts(self.patch, self.stride)
        masks = np.zeros((len(starts) ** 2, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
        for index, (top, left) in enumerate((top, left) for top in starts for left in starts):
            masks[index, top : top + self.patch, left : left + self.patch] = True
        return masks

    @cached_property
    def _coverage(self) -> np.ndarray:
        """28 x 28: how many patches cover each pixel (at least one)."""
        return self.masks.sum(axis=0)

    @property
    def passes(self) -> int:
        """Forward passes per image: the image whole, then one per patch position."""
        return len(self.masks) + 1

    def inputs(self, images: np.ndarray) -> np.ndarray:
        """N x 28 x 28 images -> N * passes x 28 x 28 float32: each image, then its occluded
        copies in the order of `masks`."""
        images = np.asarray(images, dtype=np.float32)
        occluded = np.where(self.masks[None], np.float32(BACKGROUND), images[:, None])
        return np.concatenate([images[:, None], occluded], axis=1).reshape(
            -1, IMAGE_SIZE, IMAGE_SIZE
        )

    def explain(self, probabilities: np.ndarray, target: int | None = None) -> Attributions:
        """The maps of the images whose `inputs` gave these probabilities (N * passes x
        classes), for class `target`, or else for each image's most probable class."""
        grouped = np.asarray(probabilities, dtype=np.float64).reshape(
            -1, self.passes, probabilities.shape[-1]
        )
        whole, occluded = grouped[:, 0], grouped[:, 1:]
        rows = np.arange(len(grouped))
        class_ids = whole.argmax(axis=1) if target is None else np.full(len(grouped), target)
        kept = whole[rows, class_ids]
        drops = kept[:, None] - occluded[rows, :, class_ids]  # N x K
        maps = np.tensordot(drops, self.masks, axes=1) / self._coverage
        return Attributions(class_ids, kept, maps)


def most_attributed_first(attribution: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The flat pixel indices of a map, highest attribution first, ties in random order (an
    occlusion map is exactly 0 wherever hiding changes nothing)."""
    return np.lexsort((rng.random(attribution.size), -attribution.ravel()))


def deletion_inputs(image: np.ndarray, order: np.ndarray, steps: int) -> np.ndarray:
    """`steps + 1` copies of a 28x28 image: the first whole, then with the first 1/steps,
    2/steps, ... all of its pixels in `order` (flat indices) set to the background."""
    flat = np.asarray(image, dtype=np.float32).ravel()
    rank = np.empty(flat.size, dtype=np.int64)
    rank[order] = np.arange(flat.size)
    counts = np.linspace(0, flat.size, steps + 1).round().astype(np.int64)
    deleted = rank[None, :] < counts[:, None]
    return np.where(deleted, np.float32(BACKGROUND), flat[None]).reshape(-1, *np.shape(image))


def curve_area(probabilities: np.ndarray) -> float:
    """The area under a deletion curve: the class's probability over the fraction of pixels
    deleted, 0 to 1 (trapezoids). Lower is more faithful: the map found what the model uses."""
    values = np.asarray(probabilities, dtype=np.float64)
    return float(np.trapezoid(values, dx=1 / (len(values) - 1)))
