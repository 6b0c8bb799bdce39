"""What the v2 client tests share: the service's own answers to compare the protocol's with."""

from __future__ import annotations

import io

import httpx
import numpy as np
from PIL import Image


def rest_classify(url: str, model: str, files: list[bytes]) -> dict:
    uploads = [("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(files)]
    response = httpx.post(f"{url}/classify", params={"model": model}, files=uploads, timeout=30)
    response.raise_for_status()
    return response.json()


def rest_reconstruct(url: str, files: list[bytes]) -> dict:
    uploads = [("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(files)]
    response = httpx.post(f"{url}/reconstruct", files=uploads, timeout=30)
    response.raise_for_status()
    return response.json()


def pixels(files: list[bytes]) -> np.ndarray:
    """28x28 dataset-style PNGs as the FP32 N x 1 x 28 x 28 tensor the v2 models take."""
    arrays = [np.asarray(Image.open(io.BytesIO(data)).convert("L")) for data in files]
    return (np.stack(arrays)[:, None] / 255.0).astype(np.float32)


def text(values: np.ndarray) -> list[str]:
    """A BYTES output as strings (clients give bytes from binary data, str from JSON)."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values.reshape(-1)]
