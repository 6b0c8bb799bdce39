"""`fmnist`: the model service from a shell, built on `fmnist_client.client`.

fmnist classify examples/shirt.png examples/bag.png --model lenet --top-k 3
fmnist interpolate examples/sandal.png examples/boot.png --steps 12 -o strip.png
fmnist generate -n 16 --seed 1 -o grid.png
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic_core import to_jsonable_python

from fmnist_client.client import Client, ServiceError

EPILOG = """\
exit status:
  0  success
  1  the request failed: the service answered with an error (its code and message are
     printed on stderr), it could not be reached or timed out, or a file could not be
     read or written
  2  usage error: unknown command, missing or malformed arguments

environment:
  FMNIST_URL      the service when --url is not given (default http://127.0.0.1:8000)
  FMNIST_API_KEY  the API key when --api-key is not given
"""

Handler = Callable[[Client, argparse.Namespace], str]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.json and getattr(args, "output", None):
        parser.error("-o/--output saves the PNG rendering; it cannot be combined with --json")
    try:
        with Client(args.url, api_key=args.api_key, timeout=args.timeout) as client:
            output = args.handler(client, args)
    except (ServiceError, OSError) as exc:  # OSError: an input or output file
        print(f"fmnist: error: {exc}", file=sys.stderr)
        return 1
    print(output)
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the service (default: $FMNIST_URL or http://127.0.0.1:8000)")
    common.add_argument(
        "--api-key", metavar="KEY", help="sent as a bearer token (default: $FMNIST_API_KEY)"
    )
    common.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="seconds (default: 30)"
    )
    common.add_argument("--json", action="store_true", help="print the JSON answer, not a table")

    parser = argparse.ArgumentParser(
        prog="fmnist",
        description="Classify, embed, reconstruct and generate Fashion-MNIST images "
        "with the model service.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, summary: str, handler: Handler) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            parents=[common],
            help=summary,
            description=summary,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    classify = command("classify", "class probabilities of each image", _classify)
    _images_arguments(classify, "each input beside a bar chart of its probabilities")
    classify.add_argument("--model", help="mynet or lenet (default: the service's, mynet)")
    classify.add_argument("--top-k", type=int, help="classes listed (default: 3)")
    classify.add_argument(
        "--uncalibrated", action="store_true", help="the plain softmax, not calibrated"
    )
    classify.add_argument(
        "--refuse-ood",
        action="store_true",
        help="fail, naming them, when images are unlike the training data",
    )

    embed = command("embed", "feature vectors and their place on the training-set map", _embed)
    _images_arguments(embed, "the training-set PCA map with the inputs on it")
    embed.add_argument("--model", help="mynet, lenet or vae (default: the service's, mynet)")
    embed.add_argument("--layer", help="penultimate or logits (classifiers only)")

    reconstruct = command("reconstruct", "the VAE's reconstruction of each image", _reconstruct)
    _images_arguments(reconstruct, "the inputs above their reconstructions")
    reconstruct.add_argument("--scale", type=int, help="PNG enlargement (default: 4)")

    interpolate = command("interpolate", "morph one image into another", _interpolate)
    interpolate.add_argument("start", help="the first frame's image file")
    interpolate.add_argument("end", help="the last frame's image file")
    interpolate.add_argument("--steps", type=int, help="frames, both ends included (default: 10)")
    interpolate.add_argument(
        "--method",
        choices=("linear", "slerp"),
        help="straight line or great circle (default: linear)",
    )
    interpolate.add_argument("--scale", type=int, help="PNG enlargement (default: 2)")
    _invert_argument(interpolate)
    _output_argument(interpolate, "the frames as one strip")

    generate = command("generate", "sample new images from the VAE", _generate)
    generate.add_argument("-n", type=int, help="how many (default: 16)")
    generate.add_argument("--seed", type=int, help="the same seed gives the same images")
    generate.add_argument("--scale", type=int, help="PNG enlargement (default: 2)")
    _output_argument(generate, "the images as a grid")

    models = command("models", "the loaded models, or one of them in detail", _models)
    models.add_argument("name", nargs="?", help="one model's name")

    command("health", "whether the service is alive and ready", _health)
    return parser


def _images_arguments(sub: argparse.ArgumentParser, rendering: str) -> None:
    sub.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    _invert_argument(sub)
    _output_argument(sub, rendering)


def _invert_argument(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--invert",
        choices=("auto", "true", "false"),
        help="make the garment light on dark; auto: when the background is light (default)",
    )


def _output_argument(sub: argparse.ArgumentParser, rendering: str) -> None:
    sub.add_argument("-o", "--output", type=Path, metavar="FILE", help=f"save a PNG: {rendering}")


def _classify(client: Client, args: argparse.Namespace) -> str:
    options = {"model": args.model, "invert": args.invert}
    calibrated = False if args.uncalibrated else None
    if args.output:
        png = client.classify_png(args.images, calibrated=calibrated, **options)
        return _save(args.output, png)
    ood = "refuse" if args.refuse_ood else None
    result = client.classify(
        args.images, top_k=args.top_k, calibrated=calibrated, ood=ood, **options
    )
    if args.json:
        return _json(result)
    rows = [
        [
            image,
            p.label,
            f"{p.confidence:.3f}",
            _ood_column(p.out_of_distribution, p.ood_score),
            ", ".join(f"{s.label} {s.probability:.3f}" for s in p.top_k),
        ]
        for image, p in zip(args.images, result.predictions, strict=True)
    ]
    return _table(["image", "label", "confidence", "unlike training", "top classes"], rows)


def _ood_column(flagged: bool | None, score: float | None) -> str:
    """Whether an image was flagged as out of distribution, with its score."""
    if flagged is None or score is None:
        return "-"
    return f"{'YES' if flagged else 'no'} ({score:.0f})"


def _embed(client: Client, args: argparse.Namespace) -> str:
    options = {"model": args.model, "layer": args.layer, "invert": args.invert}
    if args.output:
        return _save(args.output, client.embed_png(args.images, **options))
    result = client.embed(args.images, **options)
    if args.json:
        return _json(result)
    rows = [
        [
            image,
            f"{e.coordinates[0]:.3f}",
            f"{e.coordinates[1]:.3f}",
            _ood_column(e.out_of_distribution, e.ood_score),
            _head(e.vector),
        ]
        for image, e in zip(args.images, result.embeddings, strict=True)
    ]
    title = f"{result.model} {result.layer}: {result.dimension} dimensions\n"
    return title + _table(["image", "map x", "map y", "unlike training", "vector"], rows)


def _reconstruct(client: Client, args: argparse.Namespace) -> str:
    if args.output:
        png = client.reconstruct_png(args.images, scale=args.scale, invert=args.invert)
        return _save(args.output, png)
    result = client.reconstruct(args.images, invert=args.invert)
    if args.json:
        return _json(result)
    rows = [
        [image, f"{r.bce:.1f}", f"{r.kl:.1f}", f"{r.mse:.4f}"]
        for image, r in zip(args.images, result.reconstructions, strict=True)
    ]
    return _table(["image", "bce", "kl", "mse"], rows)


def _interpolate(client: Client, args: argparse.Namespace) -> str:
    options = {"steps": args.steps, "method": args.method, "invert": args.invert}
    if args.output:
        png = client.interpolate_png(args.start, args.end, scale=args.scale, **options)
        return _save(args.output, png)
    result = client.interpolate(args.start, args.end, **options)
    if args.json:
        return _json(result)
    rows = [[str(i), _head(latent)] for i, latent in enumerate(result.latents)]
    title = f"{result.steps} frames, {result.method}, from {args.start} to {args.end}\n"
    return title + _table(["frame", "latent"], rows)


def _generate(client: Client, args: argparse.Namespace) -> str:
    if args.output:
        return _save(args.output, client.generate_png(n=args.n, seed=args.seed, scale=args.scale))
    result = client.generate(n=args.n, seed=args.seed)
    if args.json:
        return _json(result)
    return f"{len(result.images)} images from seed {result.seed}; -o FILE saves them as a grid"


def _models(client: Client, args: argparse.Namespace) -> str:
    if args.name:
        info = client.model(args.name)
        if args.json:
            return _json(info)
        rows = [[key, _cell(value)] for key, value in info.model_dump().items()]
        return _table(["field", "value"], rows)
    models = client.models()
    if args.json:
        return _json(models)
    rows = [
        [
            m.name,
            m.kind,
            f"{m.parameters:,}",
            ", ".join(f"{k} {v:.4g}" for k, v in m.test_metrics.items()),
            m.device,
            m.sha256[:12],
        ]
        for m in models
    ]
    return _table(["model", "kind", "parameters", "test metrics", "device", "sha256"], rows)


def _health(client: Client, args: argparse.Namespace) -> str:
    health, ready = client.health(), client.ready()
    if args.json:
        return _json({"health": health, "ready": ready})
    return f"{health.status} ({health.instance_id}), {ready.status} on {ready.device}: " + (
        ", ".join(ready.models)
    )


def _json(result: object) -> str:
    """Response models (or lists and dicts of them) as indented JSON."""
    return json.dumps(to_jsonable_python(result), indent=2)


def _cell(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key} {item}" for key, item in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "-" if value is None else str(value)


def _head(vector: list[float], count: int = 4) -> str:
    """The first few values of a vector, for a table."""
    shown = " ".join(f"{v:.3f}" for v in vector[:count])
    return shown + (" ..." if len(vector) > count else "")


def _save(path: Path, png: bytes) -> str:
    path.write_bytes(png)
    width, height = struct.unpack(">II", png[16:24])  # the PNG header (IHDR) after the signature
    return f"wrote {path} ({width}x{height} PNG)"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
