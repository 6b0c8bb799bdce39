"""Images per second of each inference backend, in-process: ONNX Runtime (the exported graphs)
against PyTorch (the service's optimised model), for the same classifier at batch sizes 1 and
64 and 1 and 2 threads. No HTTP: this is the engine alone, what the service's batches cost.

    python scripts/bench_engines.py            # writes reports/bench_engines.md
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

import ml
from service.backends import load_engine

BACKENDS = ("torch", "onnxruntime")


def images_per_second(batch_fn, batch: int, seconds: float) -> float:
    """Median over three timed windows of `seconds` each, after a warm-up."""
    inputs = np.random.default_rng(0).random((batch, 28, 28), dtype=np.float32)
    for _ in range(20):
        batch_fn(inputs)
    rates = []
    for _ in range(3):
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            batch_fn(inputs)
            count += batch
        rates.append(count / (time.perf_counter() - started))
    return float(np.median(rates))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mynet")
    parser.add_argument("--checkpoint-dir", default="checkpoints")
    parser.add_argument("--seconds", type=float, default=1.0, help="per timed window")
    parser.add_argument("--output", type=Path, default=Path("reports/bench_engines.md"))
    args = parser.parse_args(argv)
    card = ml.read_card(args.model, args.checkpoint_dir)
    rows, outputs = [], {}
    for threads in (1, 2):
        engines = {
            backend: load_engine(backend, args.model, card, args.checkpoint_dir, "cpu", threads)
            for backend in BACKENDS
        }
        for batch in (1, 64):
            rates = {
                backend: images_per_second(engine.operations()["classify"], batch, args.seconds)
                for backend, engine in engines.items()
            }
            ratio = rates["onnxruntime"] / rates["torch"]
            rows.append(
                f"| {threads} | {batch} | {rates['torch']:,.0f} | {rates['onnxruntime']:,.0f} "
                f"| {ratio:.2f}x |"
            )
            print(rows[-1], flush=True)
        probe = np.random.default_rng(1).random((256, 28, 28), dtype=np.float32)
        outputs[threads] = {b: e.operations()["classify"](probe)[0] for b, e in engines.items()}
    difference = max(float(np.abs(o["onnxruntime"] - o["torch"]).max()) for o in outputs.values())
    text = "\n".join(
        [
            "# Inference engines: PyTorch against ONNX Runtime, in-process",
            "",
            "Command: `python scripts/bench_engines.py`",
            "",
            f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores; torch "
            f"{torch.__version__}, ONNX Runtime {onnxruntime.__version__}",
            f"- model: {args.model}, the service's `classify` operation of each backend "
            "(PyTorch: BatchNorm folded, channels-last weights; ONNX Runtime: the exported "
            "graph with the service's session options); median of three windows; ratio: ONNX "
            "Runtime's images/s over PyTorch's",
            f"- largest difference between the two backends' probabilities on 256 random "
            f"images: {difference:.1e}",
            "",
            "| threads | batch | PyTorch images/s | ONNX Runtime images/s | ratio |",
            "|--:|--:|--:|--:|--:|",
            *rows,
            "",
        ]
    )
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
