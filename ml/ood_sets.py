"""Images that are not Fashion-MNIST garments, built offline for out-of-distribution tests.

Each set is uint8 N x 28 x 28, light on dark like the model's input, and is made from data that
ships with the installed packages (scikit-learn's handwritten digits and sample photos) or from
a seeded generator, so it needs no download and is the same on every machine:

- `digits`: scikit-learn's 1,797 handwritten digits (8 x 8, 17 grey levels), scaled to 20 x 20
  and centred in 28 x 28 as MNIST's are;
- `photos`: square crops of scikit-learn's two sample photos, of random size and place, in
  grey, each also inverted (the service inverts images whose border is light);
- `noise`: uniform noise, and Gaussian noise around mid-grey;
- `constant`: blank images of every grey level;
- `upside_down`: the given garments turned upside down (near out-of-distribution: the training
  augmentation mirrors left and right, never up and down).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ml.fashion_mnist import IMAGE_SIZE

FAR_SETS = ("digits", "photos", "noise", "constant")
NEAR_SETS = ("upside_down",)
PHOTO_CROPS = 1_000  # per polarity
NOISE_IMAGES = 500  # per kind


def digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    small = load_digits().images  # floats 0-16, ink high
    out = np.zeros((len(small), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i, image in enumerate(small):
        scaled = Image.fromarray(np.uint8(image * 255 / 16)).resize((20, 20), Image.BILINEAR)
        out[i, 4:24, 4:24] = np.asarray(scaled)
    return out


def photos(seed: int = 0) -> np.ndarray:
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    grey = [np.asarray(Image.fromarray(p).convert("L")) for p in load_sample_images().images]
    crops = []
    for i in range(PHOTO_CROPS):
        photo = grey[i % len(grey)]
        side = int(rng.integers(IMAGE_SIZE, min(photo.shape) // 2))
        top = int(rng.integers(0, photo.shape[0] - side))
        left = int(rng.integers(0, photo.shape[1] - side))
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        crops.append(np.asarray(crop.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)))
    crops_array = np.stack(crops)
    return np.concatenate([crops_array, 255 - crops_array])


def noise(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (NOISE_IMAGES, IMAGE_SIZE, IMAGE_SIZE)
    uniform = rng.integers(0, 256, size=shape)
    gaussian = np.clip(rng.normal(128, 64, size=shape), 0, 255)
    return np.concatenate([uniform, gaussian]).astype(np.uint8)


def constant() -> np.ndarray:
    levels = np.arange(256, dtype=np.uint8)
    return np.broadcast_to(levels[:, None, None], (256, IMAGE_SIZE, IMAGE_SIZE)).copy()


def upside_down(garments: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(garments[:, ::-1, :])


def ood_sets(garments: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Every set by name; `garments` (uint8 N x 28 x 28, e.g. the test split) are turned upside
    down for the near set."""
    return {
        "digits": digits(),
        "photos": photos(seed),
        "noise": noise(seed),
        "constant": constant(),
        "upside_down": upside_down(garments),
    }
