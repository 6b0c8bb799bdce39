"""Throughput, latency and CPU use of the service against its peers, side by side in one run.

Runs these servers on the same cores, serving the same checkpoint:
  trivial     a FastAPI endpoint that reads the upload and answers a constant, under uvicorn
              with one worker per core: the ceiling of the HTTP stack (scripts/bench_peers.py);
  naive-onnx  the obvious fast server, run the same way: FastAPI with the shipped ONNX graph
              run inline in the handler, a PIL decode, no batching (scripts/bench_peers.py);
              the peer the headline compares with;
  naive       a minimal FastAPI endpoint that runs one PyTorch forward pass per request (torch's
              default threads, FastAPI's thread pool);
  litserve    LitServe with its dynamic batching (batches of up to 64, one torch thread), the
              standard small serving framework;
  service     this service as its default start command runs it (`fmnist-serve`: one worker
              process per core, ONNX Runtime on CPU, dynamic batching);
and drives each with a fixed number of /classify requests carrying PNGs as multipart `file`
fields (`--body json`: `{"images": [base64 PNG, ...]}`; LitServe, which cannot pass a multipart
upload to its inference process, always gets the JSON body): single images at concurrency 1, 16
and 64, then 64-image requests at concurrency 4.

With `--baseline REV` one more server, `baseline`, is the service as of git revision REV (its
code and its checkpoints, from a temporary worktree), run like `service`: what a change costs or
gains, side by side. `--servers` runs a subset, e.g. `--servers service,baseline`.

It runs `--repeats` rounds. In each, every server in turn (the order rotating from round to
round) is started afresh, warmed up, runs each scenario once and is stopped: the speed of a
shared machine drifts by 15% or more over minutes, and measuring the servers one after another,
all of one server's runs first, let that drift decide a ratio. The load comes from
scripts/load_generator.py in its own process (raw asyncio HTTP/1.1 on keep-alive connections,
far cheaper per request than the servers). For each run the script records the CPU time of all
the server's processes (workers, LitServe's inference process), reported as cores busy on
average; for each start, how long the server took to be ready and, after its last scenario, the
resident memory of each of its processes. Prints (and writes to --output) a markdown table of the
median req/s over the rounds with its range, images/s, median p50/p90/p99 latency and CPU, and
puts the headline and the tables in the README's bench block.

    python scripts/bench_serve.py
    python scripts/bench_serve.py --requests 500   # a quicker run
    python scripts/bench_serve.py --baseline HEAD~1 --servers service,baseline
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import platform
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import litserve
import numpy as np
import onnxruntime
import torch
import uvicorn
from bench_peers import uploaded_files  # beside this file
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image
from processes import cpu_seconds, process_tree, rss_mb  # beside this file

import ml
from ml.checkpoint import load_model
from ml.data import load_split, locate
from ml.report import markers, replace_block
from service.imaging import decode

REPO = Path(__file__).resolve().parents[1]
LOAD_GENERATOR = Path(__file__).with_name("load_generator.py")
GRPC_LOAD_GENERATOR = Path(__file__).with_name("grpc_load_generator.py")
SERVERS = ("trivial", "naive-onnx", "naive", "litserve", "service", "baseline")
# The servers each result is compared with.
PEERS = ("trivial", "naive-onnx", "naive", "litserve", "baseline")
NAMES = {
    "trivial": "trivial",
    "naive-onnx": "naive ONNX Runtime",
    "naive": "naive PyTorch",
    "litserve": "LitServe",
    "baseline": "baseline",
}
UVICORN_PEERS = ("naive-onnx", "trivial")  # scripts/bench_peers.py, under uvicorn's command
LITSERVE_BATCH_TIMEOUT_S = 0.005


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
    runs: list[dict]  # what `drive` returns, one per repeat, plus the server's "cores"

    def median(self, key: str) -> float:
        """The median over the repeats of one of the run's figures, e.g. "p99_ms"."""
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


@dataclass(frozen=True)
class Start:
    """One round of one server: a run per scenario, its start-up time and, after the runs,
    its processes' memory."""

    runs: list[dict]
    ready_s: float
    rss_mb: list[float]


@dataclass(frozen=True)
class Server:
    """One server over every round."""

    name: str
    scenarios: list[Scenario]
    starts: list[Start]

    @property
    def results(self) -> list[Result]:
        return [
            Result(self.name, scenario, [start.runs[i] for start in self.starts])
            for i, scenario in enumerate(self.scenarios)
        ]

    @property
    def ready_s(self) -> list[float]:
        return [start.ready_s for start in self.starts]

    @property
    def rss_mb(self) -> list[float]:
        """Per process, after the heaviest round (the one whose largest process was largest)."""
        return max((start.rss_mb for start in self.starts), key=max)


# ---------------------------------------------------------------------------------------------
# The peers (run as `bench_serve.py --serve naive|litserve`).


def predictions(probabilities: torch.Tensor) -> list[dict]:
    confidence, class_id = probabilities.max(dim=1)
    return [
        {"label": ml.CLASS_NAMES[c], "class_id": c, "confidence": p}
        for c, p in zip(class_id.tolist(), confidence.tolist(), strict=True)
    ]


def decode_all(encoded: list[str]) -> np.ndarray:
    return np.stack([decode(base64.b64decode(b), "auto", 4096 * 4096) for b in encoded])


def serve_naive(model_name: str, checkpoint_dir: str, port: int) -> None:
    model, _ = load_model(model_name, checkpoint_dir)
    app = FastAPI()

    def run(files: list[bytes]) -> dict:
        images = np.stack([decode(f, "auto", 4096 * 4096) for f in files])
        with torch.inference_mode():
            probabilities = torch.softmax(model(torch.from_numpy(images).unsqueeze(1)), dim=1)
        return {"predictions": predictions(probabilities)}

    @app.post("/classify")
    async def classify(request: Request) -> dict:
        """Read the upload, then decode and one forward pass for this request's images in
        FastAPI's thread pool, as it runs a sync endpoint: what a straightforward
        implementation does."""
        return await run_in_threadpool(run, await uploaded_files(request))

    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


class LitServeClassifier(litserve.LitAPI):
    """LitServe's documented pattern: decode per request, `predict` on the batch, one torch
    thread in its inference worker. (At module level: LitServe pickles it into that worker.)"""

    def __init__(self, model_name: str, checkpoint_dir: str) -> None:
        super().__init__(
            max_batch_size=64, batch_timeout=LITSERVE_BATCH_TIMEOUT_S, api_path="/classify"
        )
        self.model_name, self.checkpoint_dir = model_name, checkpoint_dir

    def setup(self, device: str) -> None:
        torch.set_num_threads(1)
        self.model, _ = load_model(self.model_name, self.checkpoint_dir)

    def decode_request(self, request: dict) -> np.ndarray:
        return decode_all(request["images"])

    def batch(self, inputs: list[np.ndarray]) -> tuple[torch.Tensor, list[int]]:
        return torch.from_numpy(np.concatenate(inputs)), [len(x) for x in inputs]

    def predict(self, batch: tuple[torch.Tensor, list[int]]) -> list[list[dict]]:
        images, sizes = batch
        with torch.inference_mode():
            probabilities = torch.softmax(self.model(images.unsqueeze(1)), dim=1)
        rows = predictions(probabilities)
        bounds = np.cumsum([0, *sizes])
        return [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def unbatch(self, output: list[list[dict]]) -> list[list[dict]]:
        return output

    def encode_response(self, output: list[dict]) -> dict:
        return {"predictions": output}


def serve_litserve(model_name: str, checkpoint_dir: str, port: int) -> None:
    api = LitServeClassifier(model_name, checkpoint_dir)
    server = litserve.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1)
    server.run(port=port, log_level="warning", generate_client_file=False)


# ---------------------------------------------------------------------------------------------
# Running servers and load.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


READY_PATHS = {
    "trivial": "/openapi.json",
    "naive-onnx": "/openapi.json",
    "naive": "/openapi.json",
    "litserve": "/health",
    "service": "/readyz",
    "baseline": "/readyz",
}


def start_server(
    kind: str, args: argparse.Namespace, port: int, grpc_port: int | None = None
) -> tuple[subprocess.Popen, float]:
    """The server (with gRPC on `grpc_port`, for the service), ready; and the seconds from its
    start until it answered its ready path."""
    tree, checkpoint_dir = REPO, args.checkpoint_dir
    if kind in ("service", "baseline"):
        command = [sys.executable, "-m", "service.server", "--port", str(port)]
        command += ["--grpc-port", str(grpc_port)] if grpc_port is not None else []
        if kind == "baseline":  # `python -m` runs the worktree's code: its folder comes first
            tree, checkpoint_dir = args.baseline_tree, str(args.baseline_tree / "checkpoints")
    elif kind in UVICORN_PEERS:
        factory = kind.replace("-", "_")
        command = [sys.executable, "-m", "uvicorn", f"bench_peers:{factory}", "--factory"]
        command += ["--app-dir", str(Path(__file__).parent), "--host", "127.0.0.1"]
        command += ["--port", str(port), "--workers", str(len(args.server_cpus))]
        command += ["--no-access-log", "--log-level", "warning"]
    else:
        command = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
        command += ["--model", args.model, "--checkpoint-dir", args.checkpoint_dir]
    graph = str(Path(checkpoint_dir, f"{args.model}.onnx").resolve())
    env = {**os.environ, "FMNIST_CHECKPOINT_DIR": checkpoint_dir, "BENCH_GRAPH": graph}
    env.pop("FMNIST_API_KEY", None)
    started = time.monotonic()
    process = subprocess.Popen(  # noqa: S603  this interpreter running this repository's code
        command, cwd=tree, env=env, preexec_fn=lambda: os.sched_setaffinity(0, args.server_cpus)
    )
    deadline = started + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{kind} server exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{READY_PATHS[kind]}", timeout=1).is_success:
                return process, time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    sys.exit(f"{kind} server did not start")


def json_body(images: list[bytes]) -> tuple[bytes, str]:
    encoded = [base64.b64encode(image).decode() for image in images]
    return json.dumps({"images": encoded}).encode(), "application/json"


def multipart_body(images: list[bytes]) -> tuple[bytes, str]:
    """The images as the multipart `file` fields a browser or `curl -F` would send."""
    boundary = "benchboundary7MA4YWxkTrZu0gW"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{i}.png"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + image
        + b"\r\n"
        for i, image in enumerate(images)
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), (
        f"multipart/form-data; boundary={boundary}"
    )


def run_load(
    url: str,
    scenario: Scenario,
    body_file: Path,
    content_type: str,
    load_cpus: list[int],
    *headers: str,
) -> dict:
    """Run the load generator in a fresh process pinned to `load_cpus`; its measurements."""
    command = [sys.executable, str(LOAD_GENERATOR), url, str(body_file), content_type]
    command += [str(scenario.concurrency), str(scenario.requests), *headers]
    return _load_process(command, load_cpus)


def run_grpc_load(target: str, scenario: Scenario, request_file: Path, load_cpus: list[int]):
    """The same for gRPC (scripts/grpc_load_generator.py)."""
    command = [sys.executable, str(GRPC_LOAD_GENERATOR), target, str(request_file)]
    command += [str(scenario.concurrency), str(scenario.requests)]
    return _load_process(command, load_cpus)


def _load_process(command: list[str], load_cpus: list[int]) -> dict:
    output = subprocess.run(  # noqa: S603  this interpreter running the load generator
        command,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, load_cpus),
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def measure(kind: str, args: argparse.Namespace, scenarios: list[Scenario], bodies: dict) -> Start:
    """One round of server `kind`: started, warmed up, each scenario once, stopped."""
    port = free_port()
    process, ready_s = start_server(kind, args, port)
    url = f"http://127.0.0.1:{port}/classify"
    bodies = bodies["json" if kind == "litserve" else args.body]
    runs = []
    try:
        warm_up = Scenario("warm-up", 16, 1, 300)
        run_load(url, warm_up, *bodies[1], args.load_cpus)
        for scenario in scenarios:
            # CPU over the wall time of the whole run, the load process's start included: a
            # server that polls while idle is charged for it.
            pids = process_tree(process.pid)
            cpu_before, started = cpu_seconds(pids), time.monotonic()
            run = run_load(url, scenario, *bodies[scenario.images_per_request], args.load_cpus)
            cores = (cpu_seconds(pids) - cpu_before) / (time.monotonic() - started)
            runs.append(run | {"cores": cores})
            print(
                f"  {kind:9} {scenario.name:22} {run['requests'] / run['seconds']:8.0f} req/s  "
                f"p99 {run['p99_ms']:7.1f} ms  CPU {cores:.2f} cores",
                flush=True,
            )
        memory = rss_mb(process_tree(process.pid))
    finally:
        stop(process)
    return Start(runs, ready_s, memory)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL for whatever of its process tree is still there (LitServe's
    inference workers can outlive their parent)."""
    pids = process_tree(process.pid)
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


# ---------------------------------------------------------------------------------------------
# Report.


def table(results: list[Result]) -> str:
    by_key = {(r.server, r.scenario): r for r in results}
    peers = [peer for peer in PEERS if any(r.server == peer for r in results)]
    lines = [
        "| server | requests | concurrency | req/s (range) | images/s | p50 ms | p90 ms | p99 ms "
        "| errors | CPU cores used | " + " | ".join(f"vs {NAMES[p]}" for p in peers) + " |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|" + "--:|" * len(peers),
    ]
    order = {server: i for i, server in enumerate(SERVERS[::-1])}
    for r in sorted(
        results,
        key=lambda r: (r.scenario.images_per_request, r.scenario.concurrency, order[r.server]),
    ):
        ratios = [
            f"{r.requests_per_s / base.requests_per_s:.2f}x"
            if (base := by_key.get((peer, r.scenario)))
            else ""
            for peer in peers
        ]
        lines.append(
            f"| {r.server} | {r.scenario.requests} x {r.scenario.images_per_request} image(s) "
            f"| {r.scenario.concurrency} | {r.requests_per_s:.0f} "
            f"({min(r.each_requests_per_s):.0f}-{max(r.each_requests_per_s):.0f}) "
            f"| {r.images_per_s:.0f} "
            + "".join(f"| {r.median(key):.1f} " for key in ("p50_ms", "p90_ms", "p99_ms"))
            + f"| {r.errors} | {r.median('cores'):.2f} | "
            + " | ".join(ratios)
            + " |"
        )
    return "\n".join(lines)


def summary(results: list[Result]) -> str:
    """The headline: the service against its peers at the highest concurrency."""
    single = [r for r in results if r.scenario.images_per_request == 1]
    top = max(r.scenario.concurrency for r in single)
    at_top = {r.server: r for r in single if r.scenario.concurrency == top}
    bulk = {r.server: r for r in results if r.scenario.images_per_request > 1}
    single_client = {r.server: r for r in single if r.scenario.concurrency == 1}
    service = at_top["service"]
    lines = []
    if "naive-onnx" in at_top:
        lines.append(onnx_peer_summary(top, at_top, single_client, bulk))
    if "naive" in at_top and "litserve" in at_top:
        lines.append(peers_summary(top, service, at_top["naive"], at_top["litserve"], bulk))
    if "baseline" in at_top:
        baseline = at_top["baseline"]
        per_request = {
            r.server: 1000 * r.median("cores") / r.requests_per_s for r in (service, baseline)
        }
        lines.append(
            f"Against the baseline revision at concurrency {top}: {_rate(service)} against "
            f"{_rate(baseline)}, **{service.requests_per_s / baseline.requests_per_s:.3f}x**, "
            f"p99 {service.median('p99_ms'):.0f} against {baseline.median('p99_ms'):.0f} ms, "
            f"{per_request['service']:.2f} against {per_request['baseline']:.2f} ms of server "
            "CPU per request."
        )
    return " ".join(lines)


def _rate(r: Result) -> str:
    return (
        f"{r.requests_per_s:.0f} req/s "
        f"(range {min(r.each_requests_per_s):.0f}-{max(r.each_requests_per_s):.0f})"
    )


def onnx_peer_summary(
    top: int, at_top: dict[str, Result], single_client: dict[str, Result], bulk: dict[str, Result]
) -> str:
    """The service against the naive ONNX Runtime server (same graph, same engine), and the
    share of the trivial endpoint's rate it reaches."""
    service, peer = at_top["service"], at_top["naive-onnx"]
    text = (
        f"At concurrency {top} the service answered {_rate(service)}, "
        f"**{service.requests_per_s / peer.requests_per_s:.2f}x** the naive ONNX Runtime "
        f"server's {_rate(peer)}, p99 {service.median('p99_ms'):.0f} against "
        f"{peer.median('p99_ms'):.0f} ms. One client at a time: p50 "
        f"{single_client['service'].median('p50_ms'):.2f} against "
        f"{single_client['naive-onnx'].median('p50_ms'):.2f} ms. 64-image requests: "
        f"{bulk['service'].images_per_s:.0f} against {bulk['naive-onnx'].images_per_s:.0f} "
        f"images/s, **{bulk['service'].images_per_s / bulk['naive-onnx'].images_per_s:.2f}x**."
    )
    if "trivial" in at_top:
        trivial = at_top["trivial"]
        text += (
            f" A FastAPI endpoint that reads the same upload and answers a constant reaches "
            f"{_rate(trivial)}: the service runs at "
            f"**{service.requests_per_s / trivial.requests_per_s:.0%}** of it."
        )
    return text


def peers_summary(
    top: int, service: Result, naive: Result, litserve: Result, bulk: dict[str, Result]
) -> str:
    return (
        f"At concurrency {top} (single-image requests) the service answered {_rate(service)}, "
        f"**{service.requests_per_s / naive.requests_per_s:.2f}x** the naive server's "
        f"{_rate(naive)} and **{service.requests_per_s / litserve.requests_per_s:.2f}x** "
        f"LitServe's {_rate(litserve)}, with a p99 of {service.median('p99_ms'):.0f} ms "
        f"(naive {naive.median('p99_ms'):.0f} ms, LitServe {litserve.median('p99_ms'):.0f} ms). "
        f"With 64-image requests it classified {bulk['service'].images_per_s:.0f} images/s, "
        f"{bulk['service'].images_per_s / bulk['naive'].images_per_s:.2f}x the naive server."
    )


def servers_table(servers: list[Server]) -> str:
    lines = [
        "| server | ready after (s), median (range) | processes "
        "| resident memory per process after its runs (MB), heaviest round |",
        "|---|--:|--:|---|",
    ]
    for server in servers:
        ready = server.ready_s
        memory = ", ".join(f"{mb:.0f}" for mb in sorted(server.rss_mb, reverse=True))
        lines.append(
            f"| {server.name} | {np.median(ready):.1f} ({min(ready):.1f}-{max(ready):.1f}) "
            f"| {len(server.rss_mb)} | {memory} |"
        )
    return "\n".join(lines)


def results_block(servers: list[Server]) -> str:
    """The headline and both tables: the report's body and the README's bench block."""
    results = [r for server in servers for r in server.results]
    return f"{summary(results)}\n\n{table(results)}\n\n{servers_table(servers)}"


def report(args: argparse.Namespace, servers: list[Server], command: str) -> str:
    return "\n".join(
        [
            f"# Serving benchmark: {', '.join(server.name for server in servers)}",
            "",
            f"Command: `{command}`",
            "",
            f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python "
            f"{platform.python_version()}, torch {torch.__version__}, ONNX Runtime "
            f"{onnxruntime.__version__}",
            f"- model: {args.model}; servers on CPU(s) {args.server_cpus}, the load process on "
            f"CPU(s) {args.load_cpus}",
            "- service: `fmnist-serve` with its defaults (a worker process per core, ONNX "
            "Runtime, dynamic batching up to 64 images); trivial and naive-onnx: "
            "scripts/bench_peers.py under `uvicorn --workers "
            f"{len(args.server_cpus)}` (a constant answer; the shipped graph inline, one "
            "ONNX Runtime thread per worker); naive: FastAPI, a PyTorch forward pass "
            "per request in FastAPI's thread pool; LitServe: batches of up to 64 with a "
            f"{LITSERVE_BATCH_TIMEOUT_S * 1000:g} ms batch timeout, one torch thread",
            f"- {args.repeats} rounds; in each, every server in turn (the order rotating) is "
            "started afresh and runs each scenario once: median req/s over the rounds (range), "
            "median latency percentiles, median CPU cores the server's processes used",
            "- requests: /classify with real 28x28 PNG test images, "
            + (
                "as multipart `file` fields (LitServe: JSON base64)"
                if args.body == "multipart"
                else "as JSON base64"
            )
            + "; latency in ms as seen by the load process",
            "",
            results_block(servers),
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


PROTOCOLS = ("/classify JSON", "v2 REST JSON", "v2 REST binary", "v2 gRPC")
MODEL_V2 = "mynet"  # what /classify runs by default
V2_INFER = f"/v2/models/{MODEL_V2}/infer"


def protocol_loads(images: list[bytes], folder: Path) -> dict[tuple[str, int], Callable]:
    """For each protocol and image count, what runs a scenario's load against the service at
    (url, grpc target): the same PNG files each time, decoded by the service alike."""
    from service.grpc import grpc_predict_v2_pb2 as pb  # this process imports no gRPC client

    loads: dict[tuple[str, int], Callable] = {}
    for count in (1, 64):
        files = images[:count]
        path = Path(folder, f"protocol-{count}")
        path.mkdir()
        classify, _ = json_body(files)
        tensor = {"name": "image_files", "datatype": "BYTES", "shape": [count]}
        wanted = [{"name": "probabilities"}]
        encoded = [base64.b64encode(f).decode() for f in files]
        v2_json = json.dumps({"inputs": [{**tensor, "data": encoded}], "outputs": wanted})
        raw = b"".join(struct.pack("<I", len(f)) + f for f in files)
        sized = {**tensor, "parameters": {"binary_data_size": len(raw)}}
        header = json.dumps({"inputs": [sized], "outputs": wanted}).encode()
        request = pb.ModelInferRequest(model_name=MODEL_V2, raw_input_contents=[raw])
        request.inputs.add(name="image_files", datatype="BYTES", shape=[count])
        request.outputs.add(name="probabilities")
        bodies = {
            "classify": classify,
            "json": v2_json.encode(),
            "binary": header + raw,
            "grpc": request.SerializeToString(),
        }
        for name, body in bodies.items():
            (path / name).write_bytes(body)
        length = f"Inference-Header-Content-Length={len(header)}"
        loads["/classify JSON", count] = lambda u, g, sc, cpus, p=path: run_load(
            f"{u}/classify", sc, p / "classify", "application/json", cpus
        )
        loads["v2 REST JSON", count] = lambda u, g, sc, cpus, p=path: run_load(
            u + V2_INFER, sc, p / "json", "application/json", cpus
        )
        loads["v2 REST binary", count] = lambda u, g, sc, cpus, p=path, h=length: run_load(
            u + V2_INFER, sc, p / "binary", "application/octet-stream", cpus, h
        )
        loads["v2 gRPC", count] = lambda u, g, sc, cpus, p=path: run_grpc_load(
            g, sc, p / "grpc", cpus
        )
    return loads


def compare_protocols(args: argparse.Namespace, scenarios: list[Scenario]) -> str:
    """--protocols: the service alone, each round started afresh with gRPC on, each scenario
    over each protocol; a table of the medians over the rounds."""
    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as folder:
        loads = protocol_loads(test_images(64), Path(folder))
        for round_number in range(args.repeats):
            port, grpc_port = free_port(), free_port()
            process, _ = start_server("service", args, port, grpc_port)
            url, target = f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}"
            try:
                warm_up = Scenario("warm-up", 16, 1, 300)
                for protocol in PROTOCOLS:
                    loads[protocol, 1](url, target, warm_up, args.load_cpus)
                turn = round_number % len(PROTOCOLS)
                for scenario in scenarios:
                    for protocol in PROTOCOLS[turn:] + PROTOCOLS[:turn]:
                        load = loads[protocol, scenario.images_per_request]
                        run = load(url, target, scenario, args.load_cpus)
                        runs.setdefault((scenario.name, protocol), []).append(run)
                        print(
                            f"  round {round_number + 1} {scenario.name:22} {protocol:15} "
                            f"{run['requests'] / run['seconds']:8.0f} req/s  "
                            f"p99 {run['p99_ms']:7.1f} ms  errors {run['errors']}",
                            flush=True,
                        )
            finally:
                stop(process)
    lines = [
        f"The service's {MODEL_V2} over each protocol, {args.repeats} round(s), medians.",
        "",
        "| workload | clients | protocol | req/s | images/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scenario in scenarios:
        for protocol in PROTOCOLS:
            result = Result(protocol, scenario, runs[scenario.name, protocol])
            lines.append(
                f"| {scenario.requests} x {scenario.images_per_request} image(s) "
                f"| {scenario.concurrency} | {protocol} | {result.requests_per_s:.0f} "
                f"| {result.images_per_s:.0f} | {result.median('p50_ms'):.1f} "
                f"| {result.median('p99_ms'):.1f} | {result.errors} |"
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    cpus = sorted(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mynet", help="a classifier")
    parser.add_argument("--checkpoint-dir", default="checkpoints")
    parser.add_argument("--requests", type=int, default=2000, help="per single-image run")
    parser.add_argument("--batch-requests", type=int, default=100, help="64-image requests")
    # Unpinned by default: each server uses the whole machine as it would in production, and
    # shares it with the load process just as every other server does.
    parser.add_argument(
        "--server-cpus",
        type=lambda s: [int(c) for c in s.split(",")],
        default=cpus,
        help="comma-separated CPU ids the servers may run on (default: all)",
    )
    parser.add_argument(
        "--load-cpus",
        type=lambda s: [int(c) for c in s.split(",")],
        default=cpus,
        help="comma-separated CPU ids for the load process (default: all)",
    )
    # Each run opens its connections afresh, and how the kernel splits them over the service's
    # workers moves a single run's figure by 15% or more on a 2-core machine: the median of
    # five is steadier than that of three.
    parser.add_argument(
        "--repeats", type=int, default=5, help="rounds: runs per scenario and server"
    )
    parser.add_argument(
        "--baseline", metavar="REV", help="also run the service as of this git revision"
    )
    parser.add_argument(
        "--servers",
        type=lambda s: s.split(","),
        help=f"comma-separated subset of {', '.join(SERVERS)} (default: all it has)",
    )
    parser.add_argument(
        "--body",
        choices=["multipart", "json"],
        default="multipart",
        help="how requests carry their PNGs: multipart `file` fields or JSON base64 (LitServe "
        "always gets JSON: it cannot take a multipart upload)",
    )
    parser.add_argument("--output", default="reports/bench_serve.md")
    parser.add_argument(
        "--protocols",
        metavar="FILE",
        help="instead: the service alone, the same workloads over /classify, v2 REST (JSON "
        "and binary) and v2 gRPC side by side; the table goes to FILE",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        default=REPO / "README.md",
        help="file whose bench block gets the summary and table (skipped if it has none)",
    )
    # Internal modes: the peers, and the load process.
    parser.add_argument("--serve", choices=["naive", "litserve"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def git(*arguments: str) -> None:
    subprocess.run(["git", *arguments], cwd=REPO, check=True)  # noqa: S603, S607  git on REPO


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve:
        serve = serve_naive if args.serve == "naive" else serve_litserve
        return serve(args.model, args.checkpoint_dir, args.port)
    scenarios = [
        Scenario("1 image, 1 client", 1, 1, max(args.requests // 2, 1)),
        Scenario("1 image, 16 clients", 16, 1, args.requests),
        Scenario("1 image, 64 clients", 64, 1, args.requests),
        Scenario("64 images, 4 clients", 4, 64, args.batch_requests),
    ]
    if args.protocols:
        text = compare_protocols(args, scenarios)
        print("\n" + text)
        Path(args.protocols).parent.mkdir(parents=True, exist_ok=True)
        Path(args.protocols).write_text(text)
        return None
    images = test_images(64)
    with tempfile.TemporaryDirectory() as folder:
        bodies: dict[str, dict[int, tuple[Path, str]]] = {"json": {}, "multipart": {}}
        for body_format, encode in (("json", json_body), ("multipart", multipart_body)):
            for count in (1, 64):
                body, content_type = encode(images[:count])
                path = Path(folder, f"body{count}.{body_format}")
                path.write_bytes(body)
                bodies[body_format][count] = (path, content_type)
        kinds = [k for k in SERVERS if k != "baseline" or args.baseline]
        kinds = [k for k in kinds if k in (args.servers or kinds)]
        if args.baseline:
            args.baseline_tree = Path(folder, "baseline")
            git("worktree", "add", "--detach", str(args.baseline_tree), args.baseline)
        try:
            starts: dict[str, list[Start]] = {kind: [] for kind in kinds}
            for round_number in range(args.repeats):
                turn = round_number % len(kinds)
                for kind in kinds[turn:] + kinds[:turn]:
                    print(f"round {round_number + 1} of {args.repeats}, {kind}:", flush=True)
                    starts[kind].append(measure(kind, args, scenarios, bodies))
        finally:
            if args.baseline:
                git("worktree", "remove", "--force", str(args.baseline_tree))
    servers = [Server(kind, scenarios, starts[kind]) for kind in kinds]
    command = " ".join(
        ["python scripts/bench_serve.py", *(argv if argv is not None else sys.argv[1:])]
    )
    text = report(args, servers, command)
    print("\n" + text)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    readme = args.readme.read_text() if args.readme.is_file() else ""
    if markers("bench")[0] in readme:
        args.readme.write_text(replace_block(readme, "bench", results_block(servers)))
        print(f"updated the bench block in {args.readme}")


if __name__ == "__main__":
    main()
