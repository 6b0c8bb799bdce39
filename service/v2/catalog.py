"""The models as the v2 protocol sees them: names, input and output tensors, and how a request's
outputs map onto the batched operations of `service.backends.engine.OPERATIONS`.

Every loaded model is a v2 model of the same name that takes images; an autoencoder is also
`<name>-decoder`, which takes latent vectors. Image models take exactly one of two inputs:
`images` (FP32 pixels in [0, 1], light garment on dark, N x 1 x 28 x 28; N x 28 x 28 is
accepted too) or `image_files` (BYTES, N encoded image files, prepared like any upload).
Outputs are the graphs' outputs by name (`ml.graphs`); a classifier's are its calibrated
`probabilities`, `uncalibrated_probabilities`, `logits`, `penultimate`, the out-of-distribution
`ood_score` (FP32) and `ood_flag` (BOOL), and `label` (BYTES class name) and `class_id` (INT64)
of the most probable class. A request is answered by the narrowest
operation that has every output it asks for, so the common cases share the batchers of the
other endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

import ml
from ml.graphs import GRAPHS
from service.backends.engine import OPERATIONS
from service.errors import NotFound, NotReady
from service.runtime import LoadedModel, Runtime

SERVER_NAME = "fmnist-service"  # in the server metadata of either protocol
EXTENSIONS = ("binary_tensor_data", "model_repository")
DECODER_SUFFIX = "-decoder"
IMAGE_SHAPE = (1, ml.IMAGE_SIZE, ml.IMAGE_SIZE)
IMAGE_OUTPUTS = frozenset({"reconstruction", "images"})  # N x 1 x 28 x 28 on the wire
DERIVED = {"label": ("probabilities", "BYTES"), "class_id": ("probabilities", "INT64")}
"""Classifier outputs computed from a graph output: name -> (source, datatype)."""
BOOL_OUTPUTS = frozenset({"ood_flag"})  # every other output that is not derived is FP32

Takes = Literal["images", "latent"]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: the batch dimension

    def metadata(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class View:
    """One v2 model: a loaded model seen through the graphs that take `takes`."""

    name: str
    loaded: LoadedModel
    takes: Takes

    @property
    def version(self) -> str:
        return version_of(self.loaded)

    @property
    def operations(self) -> dict[str, tuple[str, ...]]:
        """The operations this view may run: op -> its outputs, narrowest first."""
        ops = {
            op: outputs
            for op, (graph, outputs) in OPERATIONS[self.loaded.kind].items()
            if GRAPHS[self.loaded.kind][graph].input == self.takes
        }
        return dict(sorted(ops.items(), key=lambda item: len(item[1])))

    @property
    def output_names(self) -> tuple[str, ...]:
        # The widest operation first: the graph's own order.
        ops = reversed(self.operations.values())
        names = dict.fromkeys(name for outputs in ops for name in outputs)
        if self.loaded.kind == "classifier":
            names |= dict.fromkeys(DERIVED)
        return tuple(names)

    def inputs(self) -> tuple[TensorSpec, ...]:
        if self.takes == "latent":
            return (TensorSpec("latent", "FP32", (-1, self.loaded.latent_dim or -1)),)
        return (
            TensorSpec("images", "FP32", (-1, *IMAGE_SHAPE)),
            TensorSpec("image_files", "BYTES", (-1,)),
        )

    def operation_for(self, outputs: tuple[str, ...]) -> str:
        """The narrowest operation that yields every graph output that `outputs` need."""
        needed = {DERIVED[name][0] if name in DERIVED else name for name in outputs}
        return next(op for op, names in self.operations.items() if needed <= set(names))

    def output_spec(self, name: str, example: np.ndarray) -> TensorSpec:
        """The spec of output `name`, given its value for one input (`example`)."""
        if name in IMAGE_OUTPUTS:
            return TensorSpec(name, "FP32", (-1, *IMAGE_SHAPE))
        shape = (-1,) if name in DERIVED else (-1, *example.shape[1:])
        return TensorSpec(name, datatype(name), shape)


def datatype(output: str) -> str:
    """The v2 datatype of an output."""
    if output in DERIVED:
        return DERIVED[output][1]
    return "BOOL" if output in BOOL_OUTPUTS else "FP32"


def version_of(loaded: LoadedModel) -> str:
    return loaded.version


def views(runtime: Runtime) -> dict[str, View]:
    """Every v2 model of the loaded models, by name."""
    found: dict[str, View] = {}
    for loaded in runtime.models.values():
        found[loaded.name] = View(loaded.name, loaded, "images")
        if loaded.kind == "autoencoder":
            name = loaded.name + DECODER_SUFFIX
            found[name] = View(name, loaded, "latent")
    return found


def find(runtime: Runtime, name: str, version: str | None = None) -> View:
    """The v2 model `name` (at `version`, when given); `NotFound` otherwise."""
    view = views(runtime).get(name)
    if view is None:
        known = ", ".join(views(runtime)) or "none"
        raise NotFound(f"model {name!r} is not loaded; loaded: {known}")
    if version is not None and version != view.version:
        raise NotFound(f"model {name!r} has no version {version!r}; loaded: {view.version}")
    return view


def find_serving(runtime: Runtime, name: str, version: str | None = None) -> View:
    """`find`, once the models are serving; `NotReady` before they are and while draining
    ends."""
    if not runtime.serving:
        raise NotReady("models are not loaded yet, or the service is shutting down")
    return find(runtime, name, version)


def derive(name: str, probabilities: np.ndarray) -> np.ndarray:
    """A derived classifier output from the probabilities."""
    class_ids = probabilities.argmax(axis=1)
    if name == "class_id":
        return class_ids.astype(np.int64)
    labels = np.empty(len(class_ids), dtype=object)
    labels[:] = [ml.CLASS_NAMES[i].encode() for i in class_ids]
    return labels
