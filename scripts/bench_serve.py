"""Throughput and latency of the service against a naive reference, on the same machine.

Starts three servers in turn, each pinned to the same cores and given the same checkpoint and
torch threads:
  naive            a minimal FastAPI endpoint that runs one forward pass per request, the
                   reference every ratio is taken against;
  naive-optimised  the same endpoint with the service's inference optimisation (BatchNorm folded,
                   channels-last), to show how much of the gain is batching and the request path;
  service          `uvicorn service.app:app` (dynamic batching);
and drives each with a fixed number of multipart /classify requests (single images at
concurrency 1, 16 and 64, then 64-image requests) from a separate load process pinned to other
cores, `--repeats` times per scenario. The load process speaks HTTP/1.1 over raw asyncio sockets
on keep-alive connections, so it costs far less per request than the servers do (an httpx-based
generator would be the bottleneck). Prints (and writes to --output) a markdown table of the
median req/s with its range over the repeats, images/s and median p50/p90/p99 latency, and puts
the headline and the table in the README's bench block.

    python scripts/bench_serve.py
    python scripts/bench_serve.py --requests 500   # a quicker run
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, UploadFile
from PIL import Image

import ml
from ml.data import load_split, locate
from ml.models import optimise_for_inference
from ml.report import markers, replace_block
from service.imaging import decode

REPO = Path(__file__).resolve().parents[1]
SERVERS = ("naive", "naive-optimised", "service")


@dataclass(frozen=True)
class Scenario:
    name: str
    concurrency: int
    images_per_request: int
    requests: int


@dataclass(frozen=True)
class Result:
    """The repeated runs of one scenario against one server: medians, and the req/s range."""

    server: str
    scenario: Scenario
    runs: list[dict]  # what `drive` returns, one per repeat

    def median(self, key: str) -> float:
        """The median over the repeats of one of `drive`'s figures, e.g. "p99_ms"."""
        return float(np.median([run[key] for run in self.runs]))

    @property
    def each_requests_per_s(self) -> list[float]:
        return [run["requests"] / run["seconds"] for run in self.runs]

    @property
    def requests_per_s(self) -> float:
        return float(np.median(self.each_requests_per_s))

    @property
    def images_per_s(self) -> float:
        return self.requests_per_s * self.scenario.images_per_request

    @property
    def errors(self) -> int:
        return sum(run["errors"] for run in self.runs)


# ---------------------------------------------------------------------------------------------
# The naive reference server (run as `bench_serve.py --naive-server`).


def serve_naive(
    model_name: str, checkpoint_dir: str, port: int, threads: int, optimised: bool
) -> None:
    torch.set_num_threads(threads)
    model, _ = ml.load_model(model_name, checkpoint_dir)
    if optimised:
        model = optimise_for_inference(model)
    app = FastAPI()

    @app.post("/classify")
    def classify(file: list[UploadFile]) -> dict:
        """Decode, one forward pass for this request's images, answer. (A sync endpoint:
        FastAPI runs it in its thread pool, as a straightforward implementation would.)"""
        images = np.stack([decode(f.file.read(), "auto", 4096 * 4096) for f in file])
        with torch.inference_mode():
            probabilities = torch.softmax(model(torch.from_numpy(images).unsqueeze(1)), dim=1)
        confidence, class_id = probabilities.max(dim=1)
        return {
            "predictions": [
                {"label": ml.CLASS_NAMES[c], "class_id": c, "confidence": p}
                for c, p in zip(class_id.tolist(), confidence.tolist(), strict=True)
            ]
        }

    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


# ---------------------------------------------------------------------------------------------
# Running servers and load.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(kind: str, args: argparse.Namespace, port: int) -> subprocess.Popen:
    threads = str(len(args.server_cpus))
    if kind == "service":
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "service.app:app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    else:
        command = [
            sys.executable,
            __file__,
            "--naive-server",
            "--port",
            str(port),
            "--model",
            args.model,
            "--checkpoint-dir",
            args.checkpoint_dir,
            *(["--optimised"] if kind == "naive-optimised" else []),
        ]
    env = {
        **os.environ,
        "FMNIST_MODELS": args.model,
        "FMNIST_CHECKPOINT_DIR": args.checkpoint_dir,
        "FMNIST_DEVICE": "cpu",
        "FMNIST_TORCH_THREADS": threads,
        "FMNIST_MAX_BATCH_SIZE": str(args.max_batch_size),
        "FMNIST_MAX_BATCH_WAIT_MS": str(args.max_batch_wait_ms),
        "OMP_NUM_THREADS": threads,
    }
    env.pop("FMNIST_API_KEY", None)
    process = subprocess.Popen(
        command, cwd=REPO, env=env, preexec_fn=lambda: os.sched_setaffinity(0, args.server_cpus)
    )
    ready_path = "/readyz" if kind == "service" else "/openapi.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{kind} server exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=1).is_success:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    sys.exit(f"{kind} server did not start")


def multipart_body(images: list[bytes]) -> tuple[bytes, str]:
    request = httpx.Request(
        "POST",
        "http://x/",
        files=[("file", (f"{i}.png", im, "image/png")) for i, im in enumerate(images)],
    )
    return request.read(), request.headers["Content-Type"]


async def drive(url: str, body: bytes, content_type: str, concurrency: int, total: int) -> dict:
    """`total` POSTs of `body` to `url` over `concurrency` keep-alive connections."""
    target = httpx.URL(url)
    head = (
        f"POST {target.raw_path.decode()} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    request = head.encode() + body
    latencies: list[float] = []
    errors = 0
    remaining = total

    async def client() -> None:
        nonlocal errors, remaining
        reader, writer = await asyncio.open_connection(target.host, target.port)
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            writer.write(request)
            status = (await reader.readline()).split(b" ", 2)[1]
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            errors += status != b"200"
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99]) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": seconds,
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
    }


def run_load(
    url: str, scenario: Scenario, body_file: Path, content_type: str, load_cpus: list[int]
) -> dict:
    """Run `drive` in a fresh process pinned to `load_cpus`; returns its measurements."""
    command = [
        sys.executable,
        __file__,
        "--load",
        url,
        "--body",
        str(body_file),
        "--content-type",
        content_type,
        "--concurrency",
        str(scenario.concurrency),
        "--requests",
        str(scenario.requests),
    ]
    output = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, load_cpus),
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def measure(
    kind: str, args: argparse.Namespace, scenarios: list[Scenario], bodies: dict
) -> list[Result]:
    port = free_port()
    process = start_server(kind, args, port)
    url = f"http://127.0.0.1:{port}/classify"
    results = []
    try:
        warm_up = Scenario("warm-up", 16, 1, 300)
        run_load(url, warm_up, *bodies[1], args.load_cpus)
        for scenario in scenarios:
            body = bodies[scenario.images_per_request]
            runs = [run_load(url, scenario, *body, args.load_cpus) for _ in range(args.repeats)]
            result = Result(kind, scenario, runs)
            print(
                f"  {kind:15} {scenario.name:22} {result.requests_per_s:8.0f} req/s "
                f"{result.images_per_s:8.0f} images/s  p99 {result.median('p99_ms'):7.1f} ms",
                flush=True,
            )
            results.append(result)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return results


# ---------------------------------------------------------------------------------------------
# Report.


def table(results: list[Result]) -> str:
    naive = {r.scenario: r for r in results if r.server == "naive"}
    lines = [
        "| server | requests | concurrency | req/s (range) | images/s | p50 ms | p90 ms | p99 ms "
        "| errors | throughput vs naive | p99 vs naive |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    order = {server: i for i, server in enumerate(SERVERS[::-1])}
    for r in sorted(
        results,
        key=lambda r: (r.scenario.images_per_request, r.scenario.concurrency, order[r.server]),
    ):
        base = naive.get(r.scenario)
        ratio = f"{r.requests_per_s / base.requests_per_s:.2f}x" if base else ""
        p99 = f"{r.median('p99_ms') / base.median('p99_ms'):.2f}x" if base else ""
        lines.append(
            f"| {r.server} | {r.scenario.requests} x {r.scenario.images_per_request} image(s) "
            f"| {r.scenario.concurrency} | {r.requests_per_s:.0f} "
            f"({min(r.each_requests_per_s):.0f}-{max(r.each_requests_per_s):.0f}) "
            f"| {r.images_per_s:.0f} "
            + "".join(f"| {r.median(key):.1f} " for key in ("p50_ms", "p90_ms", "p99_ms"))
            + f"| {r.errors} | {ratio} | {p99} |"
        )
    return "\n".join(lines)


def summary(results: list[Result]) -> str:
    """The headline: the service against the naive endpoint at the highest concurrency."""
    single = [r for r in results if r.scenario.images_per_request == 1]
    top = max(r.scenario.concurrency for r in single)
    by_server = {r.server: r for r in single if r.scenario.concurrency == top}
    service, naive = by_server["service"], by_server["naive"]

    def rate(r: Result) -> str:
        return (
            f"{r.requests_per_s:.0f} req/s "
            f"(range {min(r.each_requests_per_s):.0f}-{max(r.each_requests_per_s):.0f})"
        )

    return (
        f"At concurrency {top} (single-image requests) the service answered {rate(service)} "
        f"against the naive endpoint's {rate(naive)}: "
        f"**{service.requests_per_s / naive.requests_per_s:.2f}x** the throughput, with a p99 "
        f"of {service.median('p99_ms'):.0f} ms against {naive.median('p99_ms'):.0f} ms."
    )


def report(args: argparse.Namespace, results: list[Result], command: str) -> str:
    return "\n".join(
        [
            "# Serving benchmark: the service vs a naive FastAPI endpoint",
            "",
            f"Command: `{command}`",
            "",
            f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python "
            f"{platform.python_version()}, torch {torch.__version__}",
            f"- model: {args.model} on CPU, {len(args.server_cpus)} torch thread(s); both servers "
            f"pinned to CPU(s) {args.server_cpus}, load process to CPU(s) {args.load_cpus}",
            f"- service: FMNIST_MAX_BATCH_SIZE={args.max_batch_size}, "
            f"FMNIST_MAX_BATCH_WAIT_MS={args.max_batch_wait_ms}; naive: a forward pass per request"
            "; naive-optimised: the same with BatchNorm folded and channels-last weights",
            f"- each scenario run {args.repeats} times against the same server: median req/s "
            "(range), median latency percentiles",
            "- requests: multipart /classify with real 28x28 PNG test images; latency in ms as "
            "seen by the load process",
            "",
            summary(results),
            "",
            table(results),
            "",
        ]
    )


def test_images(count: int) -> list[bytes]:
    split = load_split(locate(), "test")
    files = []
    for image in split.images[:count].numpy():
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        files.append(buffer.getvalue())
    return files


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    cpus = sorted(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mynet", help="a classifier")
    parser.add_argument("--checkpoint-dir", default="checkpoints")
    parser.add_argument("--requests", type=int, default=2000, help="per single-image run")
    parser.add_argument("--batch-requests", type=int, default=100, help="64-image requests")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-batch-wait-ms", type=float, default=0.0)
    parser.add_argument(
        "--server-cpus",
        type=lambda s: [int(c) for c in s.split(",")],
        default=cpus[:-1] or cpus,
        help="comma-separated CPU ids",
    )
    parser.add_argument(
        "--load-cpus",
        type=lambda s: [int(c) for c in s.split(",")],
        default=cpus[-1:],
        help="comma-separated CPU ids for the load process",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per scenario and server")
    parser.add_argument("--output", default="reports/bench_serve.md")
    parser.add_argument(
        "--readme",
        type=Path,
        default=REPO / "README.md",
        help="file whose bench block gets the summary and table (skipped if it has none)",
    )
    # Internal modes: the reference server, and the load process.
    parser.add_argument("--naive-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--optimised", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--body", help=argparse.SUPPRESS)
    parser.add_argument("--content-type", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.naive_server:
        threads = int(os.environ.get("FMNIST_TORCH_THREADS", "1"))
        return serve_naive(args.model, args.checkpoint_dir, args.port, threads, args.optimised)
    if args.load:
        body = Path(args.body).read_bytes()
        load = drive(args.load, body, args.content_type, args.concurrency, args.requests)
        print(json.dumps(asyncio.run(load)))
        return None
    scenarios = [
        Scenario("1 image, 1 client", 1, 1, max(args.requests // 2, 1)),
        Scenario("1 image, 16 clients", 16, 1, args.requests),
        Scenario("1 image, 64 clients", 64, 1, args.requests),
        Scenario("64 images, 4 clients", 4, 64, args.batch_requests),
    ]
    images = test_images(64)
    with tempfile.TemporaryDirectory() as folder:
        bodies = {}
        for count in (1, 64):
            body, content_type = multipart_body(images[:count])
            path = Path(folder, f"body{count}")
            path.write_bytes(body)
            bodies[count] = (path, content_type)
        results = []
        for kind in SERVERS:
            print(f"{kind}:", flush=True)
            results += measure(kind, args, scenarios, bodies)
    command = " ".join(
        ["python scripts/bench_serve.py", *(argv if argv is not None else sys.argv[1:])]
    )
    text = report(args, results, command)
    print("\n" + text)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    readme = args.readme.read_text() if args.readme.is_file() else ""
    if markers("bench")[0] in readme:
        block = f"{summary(results)}\n\n{table(results)}"
        args.readme.write_text(replace_block(readme, "bench", block))
        print(f"updated the bench block in {args.readme}")


if __name__ == "__main__":
    main()
