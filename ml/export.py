"""`fmnist-export`: the ONNX graphs of trained checkpoints, written beside them and recorded,
with their sha256, in each card. `fmnist-train` calls `export_graphs` after saving a model; this
command does the same for checkpoints that already exist.

    fmnist-export                      # every model in ./checkpoints
    fmnist-export --model vae --checkpoints runs/x/checkpoints

Each graph (see `ml.graphs`) is a small PyTorch module around the trained model, so the torch
backend of the service runs exactly what was exported. After writing a graph, the export runs it
in ONNX Runtime and refuses to record it unless it agrees with PyTorch on a random batch.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from ml.cards import CheckpointError, file_entry
from ml.checkpoint import load_model, write_card
from ml.fashion_mnist import IMAGE_SIZE
from ml.graphs import GRAPHS, Graph, graph_file
from ml.models import Classifier, ConvVAE, kl_to_standard_normal, layer_statistics
from ml.registry import MODELS, get_spec

OPSET = 18
CHECK_BATCH = 16
# ONNX Runtime and PyTorch round differently; per-image sums (BCE over 784 pixels, ~250 nats)
# carry float32's relative error, hence a relative part.
CHECK_ABSOLUTE, CHECK_RELATIVE = 1e-4, 1e-5


class ClassifierForward(nn.Module):
    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        activations = self.model.trunk(images)
        penultimate = self.model.penultimate(activations[-1])
        logits = self.model.head(penultimate)
        return (
            torch.softmax(logits, dim=1),
            logits,
            penultimate,
            layer_statistics(images, activations),
        )


def bce_per_image(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of `images` under the decoder's `logits`, summed per image: the same
    value as `F.binary_cross_entropy_with_logits` (training's `vae_loss_terms`), written out
    because the ONNX exporter turns that into log(sigmoid(x)), which is -inf once the sigmoid
    underflows (an all-black image gave an infinite BCE). This form has no such overflow."""
    bce = logits.clamp(min=0) - logits * images + torch.log1p(torch.exp(-logits.abs()))
    return bce.flatten(1).sum(1)


class VAEForward(nn.Module):
    def __init__(self, model: ConvVAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mean, log_variance = self.model.encode(images)
        logits = self.model.decode_logits(mean)
        bce = bce_per_image(logits, images)
        kl = kl_to_standard_normal(mean, log_variance)
        return mean, log_variance, torch.sigmoid(logits), bce, kl


class VAEEncoder(nn.Module):
    def __init__(self, model: ConvVAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.encode(images)


class VAEDecoder(nn.Module):
    def __init__(self, model: ConvVAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model.decode(latent)


def graph_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The graphs of `ml.graphs.GRAPHS` for this model, as modules sharing its weights, in eval
    mode (a module in training mode would put the model back into it after an export)."""
    if isinstance(model, ConvVAE):
        modules = {
            "forward": VAEForward(model),
            "encoder": VAEEncoder(model),
            "decoder": VAEDecoder(model),
        }
    else:
        assert isinstance(model, Classifier)  # noqa: S101  narrows the type: models are VAEs or classifiers
        modules = {"forward": ClassifierForward(model)}
    return {graph: module.eval() for graph, module in modules.items()}


def example_input(model: nn.Module, graph: str, batch: int) -> torch.Tensor:
    """A random batch of what `graph` takes: images in [0, 1] or latent vectors."""
    generator = torch.Generator().manual_seed(0)
    if graph == "decoder":
        assert isinstance(model, ConvVAE)  # noqa: S101  narrows the type: only a VAE has a decoder graph
        return torch.randn(batch, model.latent_dim, generator=generator)
    return torch.rand(batch, 1, IMAGE_SIZE, IMAGE_SIZE, generator=generator)


def to_onnx(module: nn.Module, example: torch.Tensor, graph: Graph, path: Path) -> bytes:
    """Write `module` to `path` as an ONNX graph with a free batch dimension; returns its bytes."""
    program = torch.onnx.export(
        module,
        (example,),
        input_names=[graph.input],
        output_names=list(graph.outputs),
        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
        opset_version=OPSET,
        dynamo=True,
        optimize=True,
        verbose=False,
    )
    model = program.model_proto
    global_average_pools(model)
    onnx.save(model, path)  # one self-contained file, hashed as a whole
    return path.read_bytes()


def global_average_pools(model: onnx.ModelProto) -> None:
    """Replace, in place, each mean over the two spatial axes of an N x C x H x W tensor (what
    `x.mean((2, 3))` exports as: a ReduceMean) by a GlobalAveragePool and a Flatten, the same
    values. ONNX Runtime runs a CPU model's convolutions in a blocked channel layout (NCHWc),
    which GlobalAveragePool reads as it is; a ReduceMean first needs its input copied back to
    plain NCHW. Measured on MyNet's graph (batch 32, one thread): the layer statistics' six means
    took 0.45 ms with their copies, 0.19 ms as pools."""
    graph = model.graph
    constants = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    constants |= {
        n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t)
        for n in graph.node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
    }
    nodes = []
    for node in graph.node:
        axes = constants.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type != "ReduceMean" or axes is None or sorted(axes.tolist()) != [2, 3]:
            nodes.append(node)
            continue
        keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        pooled = node.output[0] if keepdims else f"{node.output[0]}_pooled"
        nodes.append(onnx.helper.make_node("GlobalAveragePool", [node.input[0]], [pooled]))
        if not keepdims:
            nodes.append(onnx.helper.make_node("Flatten", [pooled], node.output, axis=1))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    unused = [i for i in graph.initializer if i.name not in used]  # the means' axes
    for initializer in unused:
        graph.initializer.remove(initializer)


def check_against_torch(module: nn.Module, onnx_bytes: bytes, example: torch.Tensor) -> float:
    """How far ONNX Runtime's outputs on `example` are from PyTorch's, as the largest ratio of
    a difference to its tolerance (at most 1 passes)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        expected = module(example)
    expected = expected if isinstance(expected, tuple) else (expected,)
    actual = session.run(None, {session.get_inputs()[0].name: example.numpy()})
    return max(
        float((np.abs(a - e) / (CHECK_ABSOLUTE + CHECK_RELATIVE * np.abs(e))).max())
        for a, e in zip(actual, (e.numpy() for e in expected), strict=True)
    )


def export_graphs(
    name: str, model: nn.Module, card: dict[str, Any], checkpoint_dir: str | os.PathLike
) -> dict[str, Any]:
    """Write `model`'s ONNX graphs beside its checkpoint and record them in its card (rewritten);
    returns the card."""
    model = model.cpu().eval()
    kind = get_spec(name).kind
    entries = {}
    for graph, module in graph_modules(model).items():
        path = Path(checkpoint_dir) / graph_file(name, graph)
        data = to_onnx(module, example_input(model, graph, 2), GRAPHS[kind][graph], path)
        difference = check_against_torch(module, data, example_input(model, graph, CHECK_BATCH))
        if difference > 1:
            path.unlink()
            raise CheckpointError(
                f"{name}'s {graph} graph differs from PyTorch in ONNX Runtime by {difference:.1f}x "
                f"the tolerance (absolute {CHECK_ABSOLUTE}, relative {CHECK_RELATIVE})"
            )
        entries[graph] = file_entry(path)
    card = {**card, "onnx": {"opset": OPSET, "torch": torch.__version__, "graphs": entries}}
    write_card(name, card, checkpoint_dir)
    return card


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fmnist-export", description="Export trained checkpoints as ONNX graphs."
    )
    parser.add_argument("--model", choices=[*MODELS, "all"], default="all")
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = list(MODELS) if args.model == "all" else [args.model]
    for name in names:
        try:
            model, card = load_model(name, args.checkpoints)
            card = export_graphs(name, model, card, args.checkpoints)
        except CheckpointError as exc:
            print(f"fmnist-export: error: {exc}", file=sys.stderr)
            return 1
        for graph, entry in card["onnx"]["graphs"].items():
            print(f"{name:<6} {graph:<8} {entry['file']:<18} sha256 {entry['sha256']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
