"""The ONNX Runtime backend: the graphs exported by `fmnist-export`, on the CPU.

Session options, chosen by measurement on small CPUs (see the README's benchmark): operators run
one at a time (`ORT_SEQUENTIAL`, one inter-op thread) on `threads` intra-op threads, with full
graph optimisation (Conv + BatchNorm folding, fused activations), and without spinning: an idle
intra-op thread sleeps instead of burning a core that another worker process or the event loop
needs.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort

from ml.cards import CheckpointError, read_verified
from ml.registry import get_spec
from service.backends.engine import Engine, GraphRunner


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def load(
    name: str, card: dict[str, Any], checkpoint_dir: str | os.PathLike, threads: int
) -> Engine:
    graphs = card.get("onnx", {}).get("graphs")
    if not graphs:
        raise CheckpointError(
            f"the card of {name!r} records no ONNX graphs: run `fmnist-export --model {name}` "
            "(or serve with FMNIST_BACKEND=torch)"
        )
    options = session_options(threads)
    runners = {}
    for graph, entry in graphs.items():
        data = read_verified(entry, checkpoint_dir, f"{name}'s {graph} graph")
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types, untyped in Python
            raise CheckpointError(
                f"ONNX Runtime cannot load {name}'s {graph} graph: {exc}"
            ) from exc
        runners[graph] = _runner(session)
    return Engine("onnxruntime", "cpu", get_spec(name).kind, runners)


def _runner(session: ort.InferenceSession) -> GraphRunner:
    input_name = session.get_inputs()[0].name

    def run(x: np.ndarray, outputs: tuple[str, ...]) -> tuple[np.ndarray, ...]:
        return tuple(session.run(list(outputs), {input_name: x}))

    return run
