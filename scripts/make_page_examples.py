"""Writes the page's bundled test images: the first image of each class in the real
Fashion-MNIST test set, as 28x28 grayscale PNGs, with an index the page reads.

    python scripts/make_page_examples.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from ml import CLASS_NAMES
from ml.data import load_split, locate

TARGET = Path(__file__).resolve().parents[1] / "service" / "static" / "examples"


def slug(label: str) -> str:
    """'T-shirt/top' -> 'tshirt-top', 'Ankle boot' -> 'ankle-boot'."""
    return re.sub(r"[^a-z]+", "-", label.lower().replace("t-shirt", "tshirt")).strip("-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder of the IDX files (default: the usual places)")
    args = parser.parse_args()
    split = load_split(locate(args.data_dir), "test")
    images, labels = split.images.numpy(), split.labels.numpy()
    TARGET.mkdir(parents=True, exist_ok=True)
    index = []
    for class_id, label in enumerate(CLASS_NAMES):
        test_index = int(np.flatnonzero(labels == class_id)[0])
        file = f"{slug(label)}.png"
        Image.fromarray(images[test_index]).save(TARGET / file, optimize=True)
        index.append({"file": file, "label": label, "class_id": class_id, "test_index": test_index})
    (TARGET / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"wrote {len(index)} images to {TARGET}")


if __name__ == "__main__":
    main()
