"""Training side of the project: data, models, registry, checkpoints, evaluation and figures.

What this package exports is importable without PyTorch, because the service needs it where it
serves on ONNX Runtime alone: the registry, the class names, and reading and verifying cards.
Everything that trains or runs a model lives in submodules that import torch
(`ml.checkpoint.load_model`, `ml.models`, `ml.train`, ...).
"""

from ml.cards import CheckpointError, read_card, read_verified
from ml.fashion_mnist import CLASS_NAMES, IMAGE_SIZE, PIXEL_MEAN, PIXEL_STD
from ml.registry import EMBEDDING_LAYERS, MODELS, UnknownModelError, get_spec

__all__ = [
    "CLASS_NAMES",
    "EMBEDDING_LAYERS",
    "IMAGE_SIZE",
    "MODELS",
    "PIXEL_MEAN",
    "PIXEL_STD",
    "CheckpointError",
    "UnknownModelError",
    "get_spec",
    "read_card",
    "read_verified",
]
