"""The ONNX Runtime backend: the graphs exported by `fmnist-export`, on the CPU.

Session options, chosen by measurement on small CPUs (see the README's benchmark): operators run
one at a time (`ORT_SEQUENTIAL`, one inter-op thread) on `threads` intra-op threads, with full
graph optimisation (Conv + BatchNorm folding, fused activations), and without spinning: an idle
intra-op thread sleeps instead of burning a core that another worker process or the event loop
needs.

A large batch (at least `2 * MIN_PART` images) is split into up to `parts` pieces that run side
by side on the same session, one in the calling thread and the others in helper threads, so a
worker whose connections carry large requests can use the cores another worker leaves idle.
Small batches, the usual case under many single-image requests, run whole: more intra-op threads
made those slower.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import onnxruntime as ort

from ml.cards import CheckpointError, read_verified
from ml.registry import get_spec
from service.backends.engine import Engine, GraphRunner

MIN_PART = 16  # images: a smaller piece of a batch is not worth a thread of its own


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def load(
    name: str,
    card: dict[str, Any],
    checkpoint_dir: str | os.PathLike,
    threads: int,
    parts: int = 1,
) -> Engine:
    graphs = card.get("onnx", {}).get("graphs")
    if not graphs:
        raise CheckpointError(
            f"the card of {name!r} records no ONNX graphs: run `fmnist-export --model {name}` "
            "(or serve with FMNIST_BACKEND=torch)"
        )
    options = session_options(threads)
    helpers = ThreadPoolExecutor(parts - 1, f"infer-{name}-part") if parts > 1 else None
    runners = {}
    for graph, entry in graphs.items():
        data = read_verified(entry, checkpoint_dir, f"{name}'s {graph} graph")
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types, untyped in Python
            raise CheckpointError(
                f"ONNX Runtime cannot load {name}'s {graph} graph: {exc}"
            ) from exc
        runners[graph] = _runner(session, helpers, parts)
    return Engine("onnxruntime", "cpu", get_spec(name).kind, runners)


def _runner(
    session: ort.InferenceSession, helpers: ThreadPoolExecutor | None, parts: int
) -> GraphRunner:
    input_name = session.get_inputs()[0].name

    def run_whole(x: np.ndarray, names: list[str]) -> list[np.ndarray]:
        return session.run(names, {input_name: x})

    def run(x: np.ndarray, outputs: tuple[str, ...]) -> tuple[np.ndarray, ...]:
        names = list(outputs)
        count = min(parts, len(x) // MIN_PART)
        if helpers is None or count < 2:
            return tuple(run_whole(x, names))
        first, *others = np.array_split(x, count)  # views along the batch: still contiguous
        pending = [helpers.submit(run_whole, piece, names) for piece in others]
        results = [run_whole(first, names), *(future.result() for future in pending)]
        return tuple(np.concatenate(column) for column in zip(*results, strict=True))

    return run
