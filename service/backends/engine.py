"""The one interface between the service and what runs a model.

An engine runs a model's graphs (`ml.graphs`: name, input, outputs) on arrays. `operations` turns
them into the batch functions the batchers call, one per operation the routes ask for, and does
the layout work both engines share: images arrive as N x 28 x 28 and the graphs take
N x 1 x 28 x 28; images in the outputs lose their channel dimension again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ml.graphs import GRAPHS
from ml.registry import Kind
from service.batching import BatchFn

GraphRunner = Callable[[np.ndarray, tuple[str, ...]], tuple[np.ndarray, ...]]
"""A graph's input array and the names of the outputs wanted -> those outputs, in that order."""

OPERATIONS: dict[Kind, dict[str, tuple[str, tuple[str, ...]]]] = {
    "classifier": {
        "classify": ("forward", ("probabilities",)),
        "embed:penultimate": ("forward", ("penultimate",)),
        "embed:logits": ("forward", ("logits",)),
        "forward": ("forward", ("probabilities", "logits", "penultimate")),
    },
    "autoencoder": {
        "embed:latent": ("encoder", ("latent_mean",)),
        "reconstruct": ("forward", ("reconstruction", "bce", "kl")),
        "decode": ("decoder", ("images",)),
        "forward": (
            "forward",
            ("latent_mean", "latent_log_variance", "reconstruction", "bce", "kl"),
        ),
    },
}
"""operation -> (graph, outputs): what each route's batcher runs. `forward` (every output of the
graph) serves the v2 requests that no narrower operation covers (`service.v2.catalog`)."""


@dataclass(frozen=True)
class Engine:
    backend: str
    device: str
    kind: Kind
    graphs: dict[str, GraphRunner]

    def operations(self) -> dict[str, BatchFn]:
        return {
            op: self._operation(graph, outputs)
            for op, (graph, outputs) in OPERATIONS[self.kind].items()
        }

    def _operation(self, graph: str, outputs: tuple[str, ...]) -> BatchFn:
        run = self.graphs[graph]
        takes_images = GRAPHS[self.kind][graph].input == "images"

        def batch(inputs: np.ndarray) -> tuple[np.ndarray, ...]:
            x = inputs[:, None] if takes_images else inputs  # a view: N x 1 x 28 x 28
            return tuple(
                out[:, 0] if out.ndim == 4 else out
                for out in run(np.ascontiguousarray(x, dtype=np.float32), outputs)
            )

        return batch
