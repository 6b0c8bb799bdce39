"""The inference graphs each kind of model is served as, by name, inputs and outputs.

`ml.export` builds them from a trained model (as PyTorch modules, and exported to ONNX); the
service runs them on either engine and asks each for the outputs an operation needs. Defining
them once keeps both engines, the ONNX files and their consumers in agreement. Plain data,
importable without PyTorch.

Every image is float32 N x 1 x 28 x 28 in [0, 1] (light garment on dark background); N is free.
"""

from __future__ import annotations

from dataclasses import dataclass

from ml.registry import Kind


@dataclass(frozen=True)
class Graph:
    input: str
    outputs: tuple[str, ...]
    description: str


GRAPHS: dict[Kind, dict[str, Graph]] = {
    "classifier": {
        "forward": Graph(
            "images",
            ("probabilities", "logits", "penultimate", "layer_statistics"),
            "class probabilities (softmax, uncalibrated), logits, the penultimate layer's "
            "features, and the layer statistics: a 7 x 7 thumbnail of the image, then each "
            "convolution's per-channel mean and root mean square",
        ),
    },
    "autoencoder": {
        "forward": Graph(
            "images",
            ("latent_mean", "latent_log_variance", "reconstruction", "bce", "kl"),
            "the encoder's Gaussian, the reconstruction decoded from its mean, and per image "
            "the reconstruction's binary cross-entropy and the KL divergence to N(0, I), in nats",
        ),
        "encoder": Graph(
            "images",
            ("latent_mean", "latent_log_variance"),
            "the encoder alone: the latent Gaussian's mean and log-variance",
        ),
        "decoder": Graph(
            "latent",
            ("images",),
            "the decoder alone: latent vectors (N x latent_dim) to images",
        ),
    },
}


def graph_file(name: str, graph: str) -> str:
    """`mynet.onnx` for a model's forward graph, `vae.decoder.onnx` for the others."""
    return f"{name}.onnx" if graph == "forward" else f"{name}.{graph}.onnx"
