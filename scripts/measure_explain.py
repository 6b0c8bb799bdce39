"""Faithfulness and cost of /explain's occlusion maps: what the patch and stride were chosen by.

For each patch size and stride: the area under the deletion curve (pixels set to the background
in `--steps` equal steps, most attributed first; the lower, the more faithful the map) beside
the same area for random orders, averaged over real test images (the page's 10 examples when
the dataset is missing), the forward passes per image and the engine's milliseconds per image
(ONNX Runtime, one thread). With --url, also the latency of POST /explain for one image at
concurrency 1 against a running server, as JSON and as PNG.

    python scripts/measure_explain.py                                 # the default grid
    python scripts/measure_explain.py --configs --url http://127.0.0.1:8765  # latency only
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

import ml
from ml.data import DatasetError, load_split, locate
from service.backends import load_engine
from service.explain import Occlusion, curve_area, deletion_inputs, most_attributed_first

EXAMPLES = Path(__file__).resolve().parents[1] / "service" / "static" / "examples"
GRID = ("3,2", "4,2", "3,3", "4,3", "5,3", "7,3", "4,4", "5,4", "6,4", "8,4", "7,7")

Probabilities = Callable[[np.ndarray], np.ndarray]


def test_images(count: int, start: int) -> tuple[np.ndarray, str]:
    """Float images in [0, 1] and where they came from."""
    try:
        images = load_split(locate(), "test").images.numpy()[start : start + count]
        return images.astype(np.float32) / 255, f"test images {start}-{start + len(images) - 1}"
    except DatasetError:
        files = sorted(EXAMPLES.glob("*.png"))
        pictures = np.stack([np.asarray(Image.open(f), dtype=np.float32) / 255 for f in files])
        return pictures, f"the page's {len(files)} example test images"


def deletion_areas(
    probabilities: Probabilities,
    images: np.ndarray,
    class_ids: np.ndarray,
    maps: np.ndarray,
    steps: int,
    orders: int,
) -> tuple[float, float]:
    """Mean deletion-curve area with the maps' order, and with `orders` random orders."""
    rng = np.random.default_rng(0)
    pixels = images[0].size
    attributed, random = [], []
    for image, class_id, attribution in zip(images, class_ids, maps, strict=True):
        ranked = deletion_inputs(image, most_attributed_first(attribution, rng), steps)
        attributed.append(curve_area(probabilities(ranked)[:, class_id]))
        shuffled = [deletion_inputs(image, rng.permutation(pixels), steps) for _ in range(orders)]
        curves = probabilities(np.concatenate(shuffled))[:, class_id].reshape(orders, steps + 1)
        random.append(np.mean([curve_area(curve) for curve in curves]))
    return float(np.mean(attributed)), float(np.mean(random))


def measure(
    probabilities: Probabilities, images: np.ndarray, occlusion: Occlusion, steps: int, orders: int
) -> str:
    started = time.perf_counter()
    attributions = occlusion.explain(
        np.concatenate([probabilities(occlusion.inputs(image[None])) for image in images])
    )
    per_image_ms = (time.perf_counter() - started) / len(images) * 1000
    attributed, random = deletion_areas(
        probabilities, images, attributions.class_ids, attributions.maps, steps, orders
    )
    return (
        f"| {occlusion.patch} | {occlusion.stride} | {occlusion.passes} | {per_image_ms:.1f} "
        f"| {attributed:.4f} | {random:.4f} | {attributed / random:.3f} |"
    )


def latency(url: str, model: str, requests: int) -> None:
    """p50 and p90 of POST /explain for one example image, one request at a time."""
    picture = (EXAMPLES / "ankle-boot.png").read_bytes()
    with httpx.Client(base_url=url, timeout=30) as client:
        for output in ("json", "png"):
            times = []
            for index in range(requests + 20):  # the first 20 warm up
                started = time.perf_counter()
                response = client.post(
                    f"/explain?model={model}&format={output}",
                    files={"file": ("boot.png", picture, "image/png")},
                )
                response.raise_for_status()
                if index >= 20:
                    times.append(time.perf_counter() - started)
            p50, p90 = np.percentile(times, [50, 90]) * 1000
            print(
                f"POST /explain ({output}, 1 image, c=1, {requests} requests): "
                f"p50 {p50:.1f} ms, p90 {p90:.1f} ms"
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["mynet", "lenet"], default="mynet")
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    parser.add_argument("--images", type=int, default=300, help="test images measured")
    parser.add_argument("--start", type=int, default=0, help="index of the first test image")
    parser.add_argument(
        "--configs", nargs="*", default=GRID, help="PATCH,STRIDE pairs (none: only time --url)"
    )
    parser.add_argument("--steps", type=int, default=28, help="deletion steps (28 pixels each)")
    parser.add_argument("--orders", type=int, default=5, help="random orders per image")
    parser.add_argument("--url", help="a running server, to time POST /explain")
    parser.add_argument("--requests", type=int, default=200)
    return parser.parse_args(argv)


def faithfulness(args: argparse.Namespace) -> None:
    """The table of deletion areas and costs, one row per patch and stride."""
    card = ml.read_card(args.model, args.checkpoints)
    engine = load_engine("onnxruntime", args.model, card, args.checkpoints, "cpu", threads=1)
    classify = engine.operations()["classify"]

    def probabilities(batch: np.ndarray) -> np.ndarray:
        return classify(batch)[0]

    images, source = test_images(args.images, args.start)
    print(f"{args.model}, {source}; deletion in {args.steps} steps, {args.orders} random orders")
    print("| patch | stride | passes | ms per image | area, attributed | area, random | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for config in args.configs:
        patch, stride = (int(value) for value in config.split(","))
        print(measure(probabilities, images, Occlusion(patch, stride), args.steps, args.orders))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.configs:
        faithfulness(args)
    if args.url:
        latency(args.url, args.model, args.requests)


if __name__ == "__main__":
    main()
