"""The PyTorch backend: the trained weights on CUDA, or on the CPU when asked for.

It runs the same graph modules that `fmnist-export` exports (`ml.export.graph_modules`), with
Conv + BatchNorm folded and channels-last weights (`ml.models.optimise_for_inference`).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ml.checkpoint import load_model
from ml.devices import resolve_device
from ml.export import graph_modules
from ml.graphs import GRAPHS
from ml.models import optimise_for_inference
from ml.registry import get_spec
from service.backends.engine import Engine, GraphRunner


def load(name: str, checkpoint_dir: str | os.PathLike, device_name: str, threads: int) -> Engine:
    device = resolve_device(device_name)
    if threads:
        torch.set_num_threads(threads)
    model, _ = load_model(name, checkpoint_dir, device)
    kind = get_spec(name).kind
    modules = graph_modules(optimise_for_inference(model))
    runners = {
        graph: _runner(module, GRAPHS[kind][graph].outputs, device)
        for graph, module in modules.items()
    }
    return Engine("torch", str(device), kind, runners)


def _runner(module: torch.nn.Module, names: tuple[str, ...], device: torch.device) -> GraphRunner:
    def run(x: np.ndarray, outputs: tuple[str, ...]) -> tuple[np.ndarray, ...]:
        with torch.inference_mode():
            values = module(torch.from_numpy(x).to(device))
        by_name = dict(zip(names, values if isinstance(values, tuple) else (values,), strict=True))
        return tuple(by_name[output].cpu().numpy() for output in outputs)

    return run
