"""The one interface between the service and what runs a model.

An engine runs a model's graphs (`ml.graphs`: name, input, outputs) on arrays. `operations` turns
them into the batch functions the batchers call, one per operation the routes ask for, and does
the work both engines share: images arrive as N x 28 x 28 and the graphs take N x 1 x 28 x 28;
images in the outputs lose their channel dimension again; and a classifier's logits and
penultimate features become calibrated probabilities and an out-of-distribution score and flag
(`ml.trust`), so every route and protocol answers with the same trusted values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ml.graphs import GRAPHS
from ml.registry import Kind
from ml.trust import INPUTS as TRUST_INPUTS
from ml.trust import Trust
from service.batching import BatchFn

GraphRunner = Callable[[np.ndarray, tuple[str, ...]], tuple[np.ndarray, ...]]
"""A graph's input array and the names of the outputs wanted -> those outputs, in that order."""

OPERATIONS: dict[Kind, dict[str, tuple[str, tuple[str, ...]]]] = {
    "classifier": {
        "classify": (
            "forward",
            ("probabilities", "uncalibrated_probabilities", "ood_score", "ood_flag"),
        ),
        "probabilities": ("forward", ("probabilities",)),  # /explain's occluded copies
        "embed:penultimate": ("forward", ("penultimate", "ood_score", "ood_flag")),
        "embed:logits": ("forward", ("logits", "ood_score", "ood_flag")),
        "forward": (
            "forward",
            (
                "probabilities",
                "uncalibrated_probabilities",
                "logits",
                "penultimate",
                "ood_score",
                "ood_flag",
            ),
        ),
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
"""operation -> (graph, outputs): what each route's batcher runs. `forward` (every output) serves
the v2 requests that no narrower operation covers (`service.v2.catalog`). A classifier's
`probabilities` are the calibrated ones; `ood_score` and `ood_flag` come from `ml.trust`."""


@dataclass(frozen=True)
class Engine:
    backend: str
    device: str
    kind: Kind
    graphs: dict[str, GraphRunner]
    trust: Trust | None = None  # a classifier's; required to run its operations

    def operations(self) -> dict[str, BatchFn]:
        return {
            op: self._operation(graph, outputs)
            for op, (graph, outputs) in OPERATIONS[self.kind].items()
        }

    def _operation(self, graph: str, outputs: tuple[str, ...]) -> BatchFn:
        if self.kind == "classifier":
            return self._classifier_operation(outputs)
        run = self.graphs[graph]
        takes_images = GRAPHS[self.kind][graph].input == "images"

        def batch(inputs: np.ndarray) -> tuple[np.ndarray, ...]:
            x = inputs[:, None] if takes_images else inputs  # a view: N x 1 x 28 x 28
            return tuple(
                out[:, 0] if out.ndim == 4 else out
                for out in run(np.ascontiguousarray(x, dtype=np.float32), outputs)
            )

        return batch

    def _classifier_operation(self, outputs: tuple[str, ...]) -> BatchFn:
        run, trust = self.graphs["forward"], self.trust
        if trust is None:
            raise ValueError("a classifier's engine needs its trust record (ml.trust.read_trust)")

        scored = bool({"ood_score", "ood_flag"} & set(outputs))
        needed = tuple(
            name for name in TRUST_INPUTS if name == "logits" or scored or name in outputs
        )

        def batch(inputs: np.ndarray) -> tuple[np.ndarray, ...]:
            x = np.ascontiguousarray(inputs[:, None], dtype=np.float32)
            values = dict(zip(needed, run(x, needed), strict=True))
            values |= trust.apply(values, outputs)
            return tuple(values[name] for name in outputs)

        return batch
