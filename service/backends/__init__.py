"""What runs the models: ONNX Runtime on CPU (no PyTorch needed), PyTorch on CUDA or on request.

Both backends give the runtime an `Engine`, whose batch functions the batchers call; nothing
above this package knows which one runs. The torch backend is imported only when chosen, so a
process serving on ONNX Runtime never loads torch.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from ml.trust import read_trust
from service.backends.engine import Engine

Backend = Literal["onnxruntime", "torch"]
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU the driver sees

__all__ = ["Backend", "Engine", "choose_backend", "load_engine"]


def choose_backend(backend: str, device: str) -> Backend:
    """`FMNIST_BACKEND` and `FMNIST_DEVICE` -> the backend that runs; `ValueError` if they do not
    go together. `auto` is torch on CUDA and ONNX Runtime on CPU; an `auto` device is CUDA when the
    machine has an NVIDIA GPU and torch is installed to drive it (checked without importing it)."""
    if backend == "onnxruntime":
        if device not in ("auto", "cpu"):
            raise ValueError(
                f"the onnxruntime backend serves on the CPU, not on {device!r}; "
                "use FMNIST_BACKEND=torch (or auto) for CUDA"
            )
        return "onnxruntime"
    if backend == "torch":
        if importlib.util.find_spec("torch") is None:
            raise ValueError("the torch backend needs PyTorch: pip install 'fmnist-service[torch]'")
        return "torch"
    if backend != "auto":
        raise ValueError(f"unknown backend {backend!r}: use auto, onnxruntime or torch")
    if device == "cpu":
        return "onnxruntime"
    if device == "auto" and not _nvidia_gpu_with_torch():
        return "onnxruntime"
    return choose_backend("torch", device)


def _nvidia_gpu_with_torch() -> bool:
    has_gpu = NVIDIA_GPUS.is_dir() and any(NVIDIA_GPUS.iterdir())
    return has_gpu and importlib.util.find_spec("torch") is not None


def load_engine(
    backend: Backend,
    name: str,
    card: dict[str, Any],
    checkpoint_dir: str | os.PathLike,
    device: str,
    threads: int,
    batch_parts: int = 1,
    ood_flag_rate: str | None = None,
) -> Engine:
    """Model `name` (whose `card` was read from `checkpoint_dir`) on `backend`, hashes verified;
    raises `ml.CheckpointError` for a missing or altered file, `ValueError` for a bad device.
    ONNX Runtime splits a large batch into up to `batch_parts` pieces run side by side. A
    classifier flags images at the card's threshold for `ood_flag_rate` (default its own)."""
    if backend == "torch":
        from service.backends import torch_engine

        engine = torch_engine.load(name, checkpoint_dir, device, threads)
    else:
        from service.backends import onnx_engine

        engine = onnx_engine.load(name, card, checkpoint_dir, threads, batch_parts)
    if engine.kind != "classifier":
        return engine
    return replace(engine, trust=read_trust(name, card, checkpoint_dir, ood_flag_rate))
