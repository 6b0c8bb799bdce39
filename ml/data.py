"""Fashion-MNIST from the original IDX files, held in memory as uint8 tensors.

The whole dataset is 55 MB, so it is read once and batched from tensors: per-sample Python
loading would be the bottleneck on a small CPU.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ml.fashion_mnist import CLASS_NAMES, IMAGE_SIZE

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
TORCHVISION_DIR = Path("data")  # torchvision puts the raw files under data/FashionMNIST/raw

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}
_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049

INSTALL_HINT = (
    "Install it with `apt-get install -y dataset-fashion-mnist` (Debian/Ubuntu), point "
    "--data-dir / FMNIST_DATA_DIR at a folder holding the four IDX files, or pass --download "
    "to let torchvision fetch it into ./data."
)


class DatasetError(RuntimeError):
    """The dataset is missing or not what Fashion-MNIST should be."""


@dataclass(frozen=True)
class Split:
    """Images as uint8 N x 28 x 28, labels as int64 N, and where each item is in its IDX file."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, positions: torch.Tensor) -> Split:
        return Split(self.images[positions], self.labels[positions], self.indices[positions])

    def indices_sha256(self) -> str:
        """A fingerprint of which file items the split holds, in order (int64 little-endian):
        what a card records so that a rerun can check it validates on the same images."""
        return hashlib.sha256(self.indices.numpy().astype("<i8").tobytes()).hexdigest()


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x 28 x 28 -> float N x 1 x 28 x 28 in [0, 1], the input every model takes."""
    return images.unsqueeze(1).float().div_(255.0)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) of unsigned bytes, validating its header."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if len(raw) < 8:
        raise DatasetError(f"{path} is too short to be an IDX file ({len(raw)} bytes)")
    magic = int.from_bytes(raw[0:4], "big")
    if magic not in (_IMAGES_MAGIC, _LABELS_MAGIC):
        raise DatasetError(f"{path} has magic number {magic}, expected 2051 or 2049 (IDX uint8)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DatasetError(
            f"{path} is truncated or corrupt: header says shape {shape} ({expected} bytes), "
            f"file has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _has_dataset(folder: Path) -> bool:
    return all(
        _find_file(folder, stem)
        for images, labels, _ in _FILES.values()
        for stem in (images, labels)
    )


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where the dataset is looked for, in order."""
    explicit = data_dir or os.environ.get("FMNIST_DATA_DIR")
    if explicit:
        return [Path(explicit)]
    return [DEBIAN_DIR, TORCHVISION_DIR / "FashionMNIST" / "raw"]


def locate(data_dir: str | os.PathLike | None = None, download: bool = False) -> Path:
    """The first folder that holds all four IDX files; downloads into ./data only if asked."""
    candidates = candidate_dirs(data_dir)
    for folder in candidates:
        if _has_dataset(folder):
            return folder
    if download:
        from torchvision.datasets import FashionMNIST

        root = Path(data_dir) if data_dir else TORCHVISION_DIR
        FashionMNIST(root, train=True, download=True)
        FashionMNIST(root, train=False, download=True)
        folder = root / "FashionMNIST" / "raw"
        if _has_dataset(folder):
            return folder
        candidates.append(folder)
    looked = ", ".join(str(c) for c in candidates)
    raise DatasetError(f"Fashion-MNIST not found (looked in: {looked}). {INSTALL_HINT}")


def load_split(folder: Path, split: str) -> Split:
    """One official split, validated: magic numbers, 60,000 / 10,000 items, 28 x 28 images."""
    images_stem, labels_stem, count = _FILES[split]
    images = read_idx(_find_file(folder, images_stem) or folder / images_stem)
    labels = read_idx(_find_file(folder, labels_stem) or folder / labels_stem)
    if images.shape != (count, IMAGE_SIZE, IMAGE_SIZE):
        raise DatasetError(
            f"{split} images in {folder} have shape {images.shape}, expected ({count}, 28, 28)"
        )
    if labels.shape != (count,):
        raise DatasetError(
            f"{split} labels in {folder} have shape {labels.shape}, expected ({count},)"
        )
    if labels.max() >= len(CLASS_NAMES):
        raise DatasetError(f"{split} labels in {folder} go up to {labels.max()}, expected 0-9")
    return Split(
        torch.from_numpy(images.copy()),
        torch.from_numpy(labels.astype(np.int64)),
        torch.arange(count),
    )


VAL_SIZE = 5_000
SPLIT_SEED = 0


@dataclass(frozen=True)
class FashionMNIST:
    """The official splits plus a fixed validation split held out of the training images."""

    train: Split
    val: Split
    test: Split
    source: Path
    split_seed: int = SPLIT_SEED


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    val_size: int = VAL_SIZE,
    split_seed: int = SPLIT_SEED,
) -> FashionMNIST:
    """The dataset, with `val_size` training images held out for validation by a permutation
    seeded with `split_seed` (the same for every model and run, whatever the training seed)."""
    folder = locate(data_dir, download)
    full_train = load_split(folder, "train")
    order = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(split_seed))
    return FashionMNIST(
        train=full_train.subset(order[val_size:]),
        val=full_train.subset(order[:val_size]),
        test=load_split(folder, "test"),
        source=folder,
        split_seed=split_seed,
    )
