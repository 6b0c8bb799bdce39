"""Training side of the project: data, models, registry, checkpoints, evaluation and figures."""

from ml.checkpoint import CheckpointError, load_model, read_card
from ml.data import CLASS_NAMES, PIXEL_MEAN, PIXEL_STD, DatasetError
from ml.registry import MODELS, UnknownModelError, get_spec

__all__ = [
    "CLASS_NAMES",
    "MODELS",
    "PIXEL_MEAN",
    "PIXEL_STD",
    "CheckpointError",
    "DatasetError",
    "UnknownModelError",
    "get_spec",
    "load_model",
    "read_card",
]
