"""Feature vectors from any model: what `/embed` returns, what the card's PCA maps are fitted on
(training images, see `ml.pca_map`) and what the report's maps show (test images)."""

from __future__ import annotations

import torch
from torch import nn

from ml.models import Classifier, ConvVAE
from ml.registry import EMBEDDING_LAYERS

CLASSIFIER_LAYERS = EMBEDDING_LAYERS["classifier"]


def layers_of(model: nn.Module) -> tuple[str, ...]:
    return EMBEDDING_LAYERS["autoencoder" if isinstance(model, ConvVAE) else "classifier"]


def embed(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Vectors of `layer` for float images `x`: penultimate features, logits or VAE latent mean."""
    if layer not in layers_of(model):
        raise ValueError(
            f"layer {layer!r} not available; choose from {', '.join(layers_of(model))}"
        )
    if isinstance(model, ConvVAE):
        return model.encode(x)[0]
    assert isinstance(model, Classifier)  # noqa: S101  narrows the type: models are VAEs or classifiers
    features = model.features(x)
    return features if layer == "penultimate" else model.head(features)
