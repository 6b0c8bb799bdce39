"""Soak test: every operation of the service's OpenAPI document, at a fixed concurrency, for a
given time, with the server's memory and descriptors watched; judged and written up.

    python scripts/soak.py                                    # 10 minutes at concurrency 64
    python scripts/soak.py --duration 30 --window 10 --warmup 10 --output /tmp/soak.md
    python scripts/soak.py --command "fmnist-serve --workers 1"
    python scripts/soak.py --url http://127.0.0.1:8000 --pid 1234

Without --url it starts the server itself (default `fmnist-serve`, with `--host 127.0.0.1 --port
P` added), waits for /readyz and stops it with SIGTERM at the end. The requests come from
`--concurrency` keep-alive connections (scripts/load_generator.py's HTTP client), each going
round the request mix from its own place in it: real Fashion-MNIST test images (the page's
bundled examples) sent to /classify, /explain, /embed, /reconstruct, /interpolate and
/generate with JSON and PNG answers and every input style (multipart, raw image body, base64
and pixel JSON), and to the v2 inference routes in JSON and in the binary tensor extension, plus
the probes, model listings and metadata (the two matplotlib charts and the explanations less
often, see CHARTS and EXPLANATIONS). Every operation of
/openapi.json must be in the mix, except loading and unloading repository models (they replace
the models whose memory is being watched), and each kind of request must be answered as expected
once before the load starts. Every few seconds the resident memory (VmRSS), open descriptors and
threads of each server process (supervisor and workers) are read from /proc.

The run passes when: no request failed (any status but 200, a wrong content type or a broken
connection counts, by status); each process's resident memory in the last window is less than
--max-rss-growth percent (default 5) above the first window after the warm-up; no process holds
more descriptors in the last window than in that first one; and no worker was replaced. Exit
status 0 when it passes, 1 when not; the report (--output, default reports/soak.md) gives the
verdict, latency percentiles per window and per request, and memory and descriptors over time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
from load_generator import encode_request, exchange  # beside this file
from PIL import Image
from processes import open_descriptors, process_tree, role, status_field  # beside this file

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "service" / "static" / "examples"  # the first test image of each class
NOT_DRIVEN = {
    # Each replaces a model while it runs: the memory compared would no longer be the same
    # models'. tests/v2 and the drain of a swapped model cover them.
    ("POST", "/v2/repository/models/{name}/load"),
    ("POST", "/v2/repository/models/{name}/unload"),
}
PNG_MAGIC = b"\x89PNG"
SAMPLE_S = 5.0
# The matplotlib charts (PNG answers of /classify and /embed) cost 0.7-0.9 s of CPU each on an
# idle worker and twice that under this load, drawn one at a time on the worker's chart thread:
# a hundred classifications' worth. Sent as often as the rest, or even in one round out of 8,
# they outgrow that thread under 64 connections: their wait passes the 30 s request deadline
# and, one connection after another, the load ends up queued behind charts. They come in one
# round of the mix out of CHARTS, about 1 request in 450.
ROUNDS = CHARTS = 32
EXPLANATIONS = 4  # /explain in one round out of 4 (see the mix)


# ---------------------------------------------------------------------------------------------
# The request mix.


@dataclass(frozen=True)
class Call:
    """One kind of request of the mix, and what a good answer starts with."""

    name: str
    operation: tuple[str, str]  # (method, path template) in the OpenAPI document
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    expect: bytes = b"{"  # JSON; PNG_MAGIC for an image; b"" for anything (text, binary)
    every: int = 1  # sent in one round of the mix out of this many


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, dict[str, str]]:
    boundary = "soak-boundary-7d1f"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{i}.png"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, (name, data) in enumerate(files)
    ]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def as_json(document: object) -> tuple[bytes, dict[str, str]]:
    return json.dumps(document).encode(), {"Content-Type": "application/json"}


def the_mix(images: list[bytes], versions: dict[str, str]) -> list[Call]:
    """Every operation, in each input and answer style it offers."""
    one, two = images[0], images[1]
    b64 = [base64.b64encode(image).decode() for image in images]
    pixels = [np.asarray(Image.open(io.BytesIO(image))) for image in images]
    floats = np.stack(pixels[:4]).astype(np.float32) / 255
    calls: list[Call] = []

    def post(
        name: str,
        template: str,
        path: str,
        payload: tuple[bytes, dict[str, str]],
        accept: str | None = None,
        expect: bytes = b"{",
        every: int = 1,
    ) -> None:
        body, headers = payload
        headers = headers | ({"Accept": accept} if accept else {})
        calls.append(Call(name, ("POST", template), "POST", path, body, headers, expect, every))

    def get(name: str, template: str, path: str, expect: bytes = b"{") -> None:
        calls.append(Call(name, ("GET", template), "GET", path, expect=expect))

    four = multipart([("file", image) for image in images[:4]])
    ends = multipart([("start", images[2]), ("end", images[3])])
    nothing = (b"", {})
    post("classify multipart", "/classify", "/classify?model=mynet&top_k=3", four)
    post(
        "classify png",
        "/classify",
        "/classify?format=png",
        multipart([("file", one)]),
        expect=PNG_MAGIC,
        every=CHARTS,
    )
    post("classify base64", "/classify", "/classify?model=lenet", as_json({"images": b64[:2]}))
    post(
        "classify pixels",
        "/classify",
        "/classify",
        as_json({"pixels": [p.tolist() for p in pixels[:2]]}),
    )
    post(
        "classify raw image",
        "/classify",
        "/classify?invert=false",
        (one, {"Content-Type": "image/png"}),
    )
    # An explanation is 50 forward passes, as many images as a full batch: sent in every round
    # on 64 connections, they fill the model's queue past its bound and are refused 503.
    post(
        "explain",
        "/explain",
        "/explain?model=mynet",
        multipart([("file", one)]),
        every=EXPLANATIONS,
    )
    post("embed", "/embed", "/embed?model=mynet&layer=penultimate", four)
    post(
        "embed png",
        "/embed",
        "/embed?model=vae",
        multipart([("file", two)]),
        accept="image/png",
        expect=PNG_MAGIC,
        every=CHARTS,
    )
    post("reconstruct", "/reconstruct", "/reconstruct", multipart([("file", one), ("file", two)]))
    post(
        "reconstruct png", "/reconstruct", "/reconstruct?format=png&scale=4", four, expect=PNG_MAGIC
    )
    post("interpolate", "/interpolate", "/interpolate?steps=8", ends)
    post(
        "interpolate png",
        "/interpolate",
        "/interpolate?steps=8&method=slerp&format=png",
        ends,
        expect=PNG_MAGIC,
    )
    post("generate", "/generate", "/generate?n=8&seed=7", nothing)
    post("generate png", "/generate", "/generate?n=16&format=png", nothing, expect=PNG_MAGIC)

    infer, versioned = "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"
    tensor = {"name": "images", "datatype": "FP32", "shape": list(floats.shape)}
    post(
        "v2 infer json",
        infer,
        "/v2/models/mynet/infer",
        as_json({"inputs": [tensor | {"data": floats.ravel().tolist()}]}),
    )
    files = {"name": "image_files", "datatype": "BYTES", "shape": [2], "data": b64[:2]}
    wanted = [{"name": "label"}, {"name": "probabilities"}]
    post(
        "v2 infer image files",
        infer,
        "/v2/models/lenet/infer",
        as_json({"inputs": [files], "outputs": wanted}),
    )
    raw = floats.tobytes()
    header = json.dumps(
        {
            "inputs": [tensor | {"parameters": {"binary_data_size": len(raw)}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    binary_headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    post(
        "v2 infer binary",
        versioned,
        f"/v2/models/vae/versions/{versions['vae']}/infer",
        (header + raw, binary_headers),
        expect=b"",
    )
    latent = {"name": "latent", "datatype": "FP32", "shape": [4, 32], "data": [0.1] * 128}
    post("v2 infer decoder", infer, "/v2/models/vae-decoder/infer", as_json({"inputs": [latent]}))
    post(
        "v2 repository index",
        "/v2/repository/index",
        "/v2/repository/index",
        as_json({}),
        expect=b"[",
    )

    get("healthz", "/healthz", "/healthz")
    get("readyz", "/readyz", "/readyz")
    get("metrics", "/metrics", "/metrics", expect=b"")
    get("models", "/models", "/models")
    get("model", "/models/{name}", "/models/vae")
    get("v2 server", "/v2", "/v2")
    get("v2 live", "/v2/health/live", "/v2/health/live")
    get("v2 ready", "/v2/health/ready", "/v2/health/ready")
    get("v2 model", "/v2/models/{name}", "/v2/models/mynet")
    get("v2 model ready", "/v2/models/{name}/ready", "/v2/models/lenet/ready")
    get(
        "v2 version",
        "/v2/models/{name}/versions/{version}",
        f"/v2/models/mynet/versions/{versions['mynet']}",
    )
    get(
        "v2 version ready",
        "/v2/models/{name}/versions/{version}/ready",
        f"/v2/models/vae/versions/{versions['vae']}/ready",
    )
    return calls


def uncovered(document: dict, calls: list[Call]) -> list[str]:
    """Operations of the OpenAPI document that the mix leaves out, other than `NOT_DRIVEN`."""
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    missing = operations - {call.operation for call in calls} - NOT_DRIVEN
    return sorted(f"{method} {path}" for method, path in missing)


# ---------------------------------------------------------------------------------------------
# Load, and samples of the server's processes.


@dataclass
class Outcome:
    done: float  # seconds since the start of the load
    call: str
    status: str  # "200", another status, "bad body" or an exception's name
    seconds: float


@dataclass
class Sample:
    at: float  # seconds since the start of the load
    pid: int
    role: str
    rss_mb: float
    descriptors: int
    threads: int


async def load(url: str, calls: list[Call], concurrency: int, duration: float) -> list[Outcome]:
    """`concurrency` keep-alive connections, each going round the mix (`ROUNDS` rounds of
    `calls`, each call in the rounds its `every` says) from its own place in it, until
    `duration` seconds have passed; a broken connection is opened again."""
    target = urlsplit(url)
    schedule = [call for turn in range(ROUNDS) for call in calls if turn % call.every == 0]
    encoded = [
        encode_request(call.method, url + call.path, call.body, call.headers) for call in schedule
    ]
    outcomes: list[Outcome] = []
    started = time.monotonic()
    end = started + duration

    async def client(offset: int) -> None:
        turn = offset
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while time.monotonic() < end:
            index = turn % len(schedule)
            turn += 1
            sent = time.monotonic()
            try:
                if connection is None:
                    connection = await asyncio.open_connection(target.hostname, target.port)
                status, body = await exchange(*connection, encoded[index])
                result = str(status)
                if status == 200 and not body.startswith(schedule[index].expect):
                    result = "bad body"
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
                result = type(error).__name__
                if connection is not None:
                    connection[1].close()
                connection = None
            now = time.monotonic()
            outcomes.append(Outcome(now - started, schedule[index].name, result, now - sent))
        if connection is not None:
            connection[1].close()

    await asyncio.gather(*(client(i * len(schedule) // concurrency) for i in range(concurrency)))
    return outcomes


async def preflight(url: str, calls: list[Call], streams: int = 4) -> list[str]:
    """Each call of the mix once on each of `streams` parallel streams of fresh connections
    (so that every worker is likely to see each): what a worker sets up on first use (the chart
    library, caches) happens before the measured load, and a call the server does not answer as
    expected fails the run at once. The failures, as `name: status`."""
    target = urlsplit(url)

    async def once(call: Call) -> str | None:
        request = encode_request(call.method, url + call.path, call.body, call.headers)
        try:
            connection = await asyncio.open_connection(target.hostname, target.port)
            status, body = await exchange(*connection, request)
            connection[1].close()
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
            return f"{call.name}: {type(error).__name__}"
        if status != 200 or not body.startswith(call.expect):
            return f"{call.name}: {status} {body[:200]!r}"
        return None

    async def stream() -> list[str]:
        return [failure for call in calls if (failure := await once(call)) is not None]

    results = await asyncio.gather(*(stream() for _ in range(streams)))
    return [failure for failures in results for failure in failures]


async def watch(root: int | None, duration: float, every: float) -> list[Sample]:
    """The resident memory, descriptors and threads of each process under `root`, every
    `every` seconds for `duration` seconds."""
    samples: list[Sample] = []
    if root is None:
        return samples
    started = time.monotonic()
    while (at := time.monotonic() - started) < duration:
        for pid in process_tree(root):
            rss, fds, threads = (
                status_field(pid, "VmRSS"),
                open_descriptors(pid),
                status_field(pid, "Threads"),
            )
            if rss is not None and fds is not None and threads is not None:
                samples.append(Sample(at, pid, role(pid, root), rss / 1024, fds, threads))
        await asyncio.sleep(every - (time.monotonic() - started - at))
    return samples


async def soak(
    url: str, calls: list[Call], root: int | None, args: argparse.Namespace
) -> tuple[list[Outcome], list[Sample]]:
    watching = asyncio.create_task(watch(root, args.duration, args.sample))
    outcomes = await load(url, calls, args.concurrency, args.duration)
    return outcomes, await watching


# ---------------------------------------------------------------------------------------------
# Judgement.


@dataclass
class Verdict:
    passed: bool
    lines: list[str]  # one per criterion, each saying whether it held


def windows(duration: float, width: float) -> list[tuple[float, float]]:
    edges = list(np.arange(0, duration, width)) + [duration]
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def compared_windows(duration: float, width: float, warmup: float) -> tuple[tuple, tuple]:
    """The first window after the warm-up, and the last window of the run."""
    first = (warmup, min(warmup + width, duration))
    last = (max(duration - width, first[0]), duration)
    return first, last


def mean_in(samples: list[Sample], pid: int, span: tuple[float, float], key: str) -> float | None:
    values = [getattr(s, key) for s in samples if s.pid == pid and span[0] <= s.at < span[1]]
    return float(np.mean(values)) if values else None


def max_in(samples: list[Sample], pid: int, span: tuple[float, float], key: str) -> float | None:
    values = [getattr(s, key) for s in samples if s.pid == pid and span[0] <= s.at < span[1]]
    return float(max(values)) if values else None


def judge(
    outcomes: list[Outcome],
    samples: list[Sample],
    duration: float,
    width: float,
    warmup: float,
    max_rss_growth: float,
) -> Verdict:
    lines, passed = [], True
    errors = Counter(o.status for o in outcomes if o.status != "200")
    if errors:
        passed = False
        listed = ", ".join(f"{status}: {count}" for status, count in errors.most_common())
        lines.append(f"FAIL errors: {sum(errors.values())} of {len(outcomes)} requests ({listed})")
    else:
        lines.append(f"pass errors: 0 of {len(outcomes)} requests")
    if not samples:
        lines.append("not measured: memory and descriptors (no server process to read)")
        return Verdict(passed, lines)
    first, last = compared_windows(duration, width, warmup)
    span = f"{first[0]:g}-{first[1]:g} s against {last[0]:g}-{last[1]:g} s"
    growth, fd_growth = [], []
    for pid in sorted({s.pid for s in samples}):
        before, after = (
            mean_in(samples, pid, first, "rss_mb"),
            mean_in(samples, pid, last, "rss_mb"),
        )
        if before is None or after is None:
            continue
        name = f"{next(s.role for s in samples if s.pid == pid)} {pid}"
        growth.append((100 * (after - before) / before, name, before, after))
        fds_before, fds_after = (max_in(samples, pid, w, "descriptors") for w in (first, last))
        if fds_before is not None and fds_after is not None:
            fd_growth.append((fds_after - fds_before, name, fds_before, fds_after))
    if not growth:
        lines.append(f"not measured: memory (no process was sampled in both {span})")
        return Verdict(passed, lines)
    worst = max(growth)
    verdict = "pass" if worst[0] < max_rss_growth else "FAIL"
    passed &= verdict == "pass"
    lines.append(
        f"{verdict} memory: resident memory grew at most {worst[0]:+.1f}% ({worst[1]}: "
        f"{worst[2]:.0f} -> {worst[3]:.0f} MB, mean over {span}; limit {max_rss_growth:g}%)"
    )
    grown = [entry for entry in fd_growth if entry[0] > 0]
    if grown:
        passed = False
        listed = ", ".join(f"{name}: {a:.0f} -> {b:.0f}" for _, name, a, b in grown)
        lines.append(f"FAIL descriptors: more open in the last window ({listed})")
    else:
        total = sum(entry[3] for entry in fd_growth)
        lines.append(
            f"pass descriptors: none more in the last window than in the first after warm-up "
            f"({total:.0f} open in all at the end, most per process in each window)"
        )
    workers = {s.pid for s in samples if s.role == "worker"}
    at_start = {s.pid for s in samples if s.role == "worker" and s.at == samples[0].at}
    if workers - at_start:
        passed = False
        lines.append(f"FAIL workers: replaced during the run ({sorted(workers - at_start)} new)")
    else:
        lines.append(f"pass workers: the same {len(at_start)} worker(s) throughout")
    return Verdict(passed, lines)


# ---------------------------------------------------------------------------------------------
# Report.


def percentiles(seconds: list[float]) -> str:
    if not seconds:
        return "| | "
    p50, p99 = np.percentile(seconds, [50, 99]) * 1000
    return f"| {p50:.0f} | {p99:.0f} "


def window_table(outcomes: list[Outcome], duration: float, width: float) -> str:
    lines = [
        "| window (s) | requests | req/s | p50 ms | p99 ms | errors |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for start, end in windows(duration, width):
        inside = [o for o in outcomes if start <= o.done < end]
        errors = sum(o.status != "200" for o in inside)
        lines.append(
            f"| {start:g}-{end:g} | {len(inside)} | {len(inside) / (end - start):.0f} "
            + percentiles([o.seconds for o in inside])
            + f"| {errors} |"
        )
    return "\n".join(lines)


def call_table(outcomes: list[Outcome], calls: list[Call]) -> str:
    by_call: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_call[outcome.call].append(outcome)
    lines = [
        "| request | operation | requests | p50 ms | p99 ms | errors |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for call in calls:
        done = by_call[call.name]
        errors = sum(o.status != "200" for o in done)
        lines.append(
            f"| {call.name} | `{call.operation[0]} {call.operation[1]}` | {len(done)} "
            + percentiles([o.seconds for o in done])
            + f"| {errors} |"
        )
    return "\n".join(lines)


def process_table(samples: list[Sample], duration: float, width: float) -> str:
    if not samples:
        return "No server process was read (a --url without --pid)."
    spans = windows(duration, width)
    pids = sorted({s.pid for s in samples}, key=lambda pid: (pid != samples[0].pid, pid))
    header = "| process | " + " | ".join(f"{a:g}-{b:g} s" for a, b in spans) + " |"
    lines = [header, "|---|" + "--:|" * len(spans)]
    for pid in pids:
        name = f"{next(s.role for s in samples if s.pid == pid)} {pid}"
        cells = []
        for span in spans:
            rss = mean_in(samples, pid, span, "rss_mb")
            fds = max_in(samples, pid, span, "descriptors")
            threads = max_in(samples, pid, span, "threads")
            cells.append("" if rss is None else f"{rss:.1f} MB, {fds:.0f} fds, {threads:.0f} t")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(
    args: argparse.Namespace,
    command: str,
    server: str,
    calls: list[Call],
    outcomes: list[Outcome],
    samples: list[Sample],
    verdict: Verdict,
    stopped: str,
) -> str:
    first, last = compared_windows(args.duration, args.window, args.warmup)
    rate = len(outcomes) / args.duration
    return "\n".join(
        [
            "# Soak test",
            "",
            f"Command: `{command}`",
            "",
            f"**{'PASS' if verdict.passed else 'FAIL'}**: {len(outcomes)} requests in "
            f"{args.duration:g} s ({rate:.0f}/s) at concurrency {args.concurrency}.",
            "",
            *[f"- {line}" for line in verdict.lines],
            "",
            f"- server: {server}; {stopped}",
            f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared by the server "
            f"and this load), Python {platform.python_version()}",
            f"- mix: {len(calls)} kinds of request in turn on each of {args.concurrency} "
            f"keep-alive connections (the two matplotlib charts in one round out of {CHARTS}), "
            "covering every operation of /openapi.json but "
            + ", ".join(f"`{m} {p}`" for m, p in sorted(NOT_DRIVEN))
            + "; images: the bundled first test image of each class",
            f"- memory and descriptors read from /proc every {args.sample:g} s; growth compares "
            f"the first window after the {args.warmup:g} s warm-up ({first[0]:g}-{first[1]:g} s) "
            f"with the last ({last[0]:g}-{last[1]:g} s)",
            "",
            "## Latency and errors over time",
            "",
            window_table(outcomes, args.duration, args.window),
            "",
            "## Each kind of request",
            "",
            call_table(outcomes, calls),
            "",
            "## Server processes: mean resident memory, most open descriptors and threads",
            "",
            process_table(samples, args.duration, args.window),
            "",
        ]
    )


# ---------------------------------------------------------------------------------------------
# Running it.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(command: str, log: Path) -> tuple[subprocess.Popen, str]:
    """The server, started by `command` on a free loopback port, ready; and its URL."""
    port = free_port()
    words = shlex.split(command)
    beside = Path(sys.executable).with_name(words[0])
    if beside.exists():  # fmnist-serve, uvicorn of this environment
        words[0] = str(beside)
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603  the command the user asked for
            [*words, "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{command} exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    sys.exit(f"{command} was not ready within 120 s; see {log}")


def stop_server(process: subprocess.Popen) -> str:
    """SIGTERM, as an orchestrator stops it; how that went."""
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        return "still running 60 s after SIGTERM, killed"
    return f"stopped by SIGTERM in {time.monotonic() - started:.1f} s (exit status {code})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", help="a running server (default: start one with --command)")
    target.add_argument("--command", default="fmnist-serve", help="starts the server")
    parser.add_argument("--pid", type=int, help="with --url: the server's main process")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=600, help="seconds of load")
    parser.add_argument("--window", type=float, default=30, help="seconds per report window")
    parser.add_argument("--warmup", type=float, default=60, help="seconds left out of the growth")
    parser.add_argument("--sample", type=float, default=SAMPLE_S, help="seconds between samples")
    parser.add_argument("--max-rss-growth", type=float, default=5.0, help="percent")
    parser.add_argument("--output", type=Path, default=REPO / "reports" / "soak.md")
    args = parser.parse_args(argv)
    if args.warmup + args.window > args.duration:
        parser.error("--duration must leave at least one --window after --warmup")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join(["python scripts/soak.py", *(argv if argv is not None else sys.argv[1:])])
    log = Path(tempfile.gettempdir()) / f"soak-server-{os.getpid()}.log"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    process = None
    if args.url:
        url, root, server = args.url.rstrip("/"), args.pid, args.url
    else:
        process, url = start_server(args.command, log)
        root, server = process.pid, f"`{args.command}`"
    try:
        images = [path.read_bytes() for path in sorted(EXAMPLES.glob("*.png"))]
        with httpx.Client(base_url=url, timeout=30) as client:
            document = client.get("/openapi.json").json()
            versions = {
                name: client.get(f"/v2/models/{name}").json()["versions"][0]
                for name in ("mynet", "vae")
            }
        calls = the_mix(images, versions)
        missing = uncovered(document, calls)
        if missing:
            print(f"operations not in the mix: {missing}", file=sys.stderr)
            return 2
        failures = asyncio.run(preflight(url, calls))
        if failures:
            print(f"requests not answered as expected: {failures}", file=sys.stderr)
            return 2
        print(
            f"soak: {len(calls)} kinds of request at concurrency {args.concurrency} for "
            f"{args.duration:g} s against {url}",
            flush=True,
        )
        outcomes, samples = asyncio.run(soak(url, calls, root, args))
    finally:
        stopped = stop_server(process) if process is not None else "left running"
    verdict = judge(outcomes, samples, args.duration, args.window, args.warmup, args.max_rss_growth)
    text = report(args, command, server, calls, outcomes, samples, verdict, stopped)
    args.output.write_text(text)
    print(text)
    print(f"wrote {args.output}" + (f"; server log: {log}" if process is not None else ""))
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
