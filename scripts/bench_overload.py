"""The service past its capacity: 4x the clients it carries, with and without the in-flight
limit, side by side in one run.

Starts `fmnist-serve` (its defaults: one worker per core, FMNIST_MAX_IN_FLIGHT=48) and drives
`/classify` with one real test image per request (`{"images": [base64 PNG]}`), each client on
its own keep-alive connection sending its next request as soon as it has an answer, or, when
refused with 503, after the Retry-After it was given (a well-behaved client):

  normal    `--clients` clients (default 64, the load of the README's benchmark);
  4x        four times as many;
  4x, no limit   the same, on a server started with FMNIST_MAX_IN_FLIGHT=0.

Each phase runs `--seconds` (default 60). Reported per phase: answered requests per second,
refusals (503) per second, other statuses, and the p50/p99 latency of the answered requests.
The verdict: at 4x, at least 90% of the normal throughput is answered, and the answered
requests' p99 is at most twice the normal one. Writes reports/overload.md.

    python scripts/bench_overload.py
    python scripts/bench_overload.py --seconds 20   # a quicker run
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from load_generator import encode_request, exchange  # beside this file
from soak import start_server, stop_server

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "service" / "static" / "examples" / "tshirt-top.png"  # a real test-set image
RETRY_AFTER_S = 1.0  # what the service's 503 answers say


@dataclass
class Phase:
    name: str
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def answered_per_s(self) -> float:
        return self.statuses.get(200, 0) / self.seconds

    def per_s(self, status: int) -> float:
        return self.statuses.get(status, 0) / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")


async def drive(url: str, phase: Phase) -> None:
    """`phase.clients` well-behaved clients for `phase.seconds`; fills in the phase."""
    target = urlsplit(url)
    body = json.dumps({"images": [base64.b64encode(IMAGE.read_bytes()).decode()]}).encode()
    request = encode_request("POST", f"{url}/classify", body, {"Content-Type": "application/json"})
    end = time.monotonic() + phase.seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection(target.hostname, target.port)
        while time.monotonic() < end:
            started = time.perf_counter()
            status, _ = await exchange(reader, writer, request)
            phase.statuses[status] = phase.statuses.get(status, 0) + 1
            if status == 200:
                phase.latencies.append(time.perf_counter() - started)
            elif status == 503:
                await asyncio.sleep(RETRY_AFTER_S)
        writer.close()

    await asyncio.gather(*(client() for _ in range(phase.clients)))


def run_phase(name: str, clients: int, seconds: float, limit: str | None = None) -> Phase:
    """One phase on a fresh server; `limit` sets FMNIST_MAX_IN_FLIGHT (None: its default)."""
    phase = Phase(name, clients, seconds)
    if limit is None:
        os.environ.pop("FMNIST_MAX_IN_FLIGHT", None)
    else:
        os.environ["FMNIST_MAX_IN_FLIGHT"] = limit
    log = Path(tempfile.gettempdir()) / f"bench_overload_{clients}.log"
    process, url = start_server("fmnist-serve", log)
    try:
        asyncio.run(drive(url, Phase("warm-up", clients, 3)))
        asyncio.run(drive(url, phase))
    finally:
        stop_server(process)
    print(
        f"{name}: {phase.answered_per_s:.0f} answered/s, {phase.per_s(503):.0f} refused/s, "
        f"p50 {phase.percentile(50):.0f} ms, p99 {phase.percentile(99):.0f} ms, {phase.statuses}",
        flush=True,
    )
    return phase


def report(phases: list[Phase], verdict: list[str], command: str) -> str:
    lines = [
        "# Past capacity: 4x the clients, with and without the in-flight limit",
        "",
        f"`{command}` on {platform.machine()}, {os.cpu_count()} cores "
        f"({platform.python_implementation()} {platform.python_version()}).",
        "",
        "| phase | clients | answered req/s | refused (503) req/s | other statuses | "
        "p50 ms | p99 ms |",
        "|---|--:|--:|--:|---|--:|--:|",
    ]
    for phase in phases:
        other = {s: n for s, n in phase.statuses.items() if s not in (200, 503)}
        lines.append(
            f"| {phase.name} | {phase.clients} | {phase.answered_per_s:.0f} | "
            f"{phase.per_s(503):.1f} | {other or 'none'} | {phase.percentile(50):.0f} | "
            f"{phase.percentile(99):.0f} |"
        )
    return "\n".join([*lines, "", *verdict, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64, help="the normal load")
    parser.add_argument("--seconds", type=float, default=60.0, help="per phase")
    parser.add_argument("--output", type=Path, default=REPO / "reports" / "overload.md")
    args = parser.parse_args(argv)
    normal = run_phase("normal", args.clients, args.seconds)
    over = run_phase("4x", 4 * args.clients, args.seconds)
    unlimited = run_phase("4x, no limit", 4 * args.clients, args.seconds, limit="0")
    kept = over.answered_per_s / normal.answered_per_s
    slower = over.percentile(99) / normal.percentile(99)
    unlimited_slower = unlimited.percentile(99) / normal.percentile(99)
    verdict = [
        f"- Answered at 4x: {kept:.0%} of the normal throughput (needs >= 90%): "
        f"{'pass' if kept >= 0.9 else 'FAIL'}.",
        f"- p99 of the answered requests at 4x: {slower:.2f}x the normal one (needs <= 2x): "
        f"{'pass' if slower <= 2 else 'FAIL'}.",
        f"- Without the limit, p99 at 4x is {unlimited_slower:.2f}x the normal one.",
    ]
    command = "python scripts/bench_overload.py " + " ".join(argv or sys.argv[1:])
    text = report([normal, over, unlimited], verdict, command.strip())
    args.output.write_text(text)
    print(text)
    return 0 if kept >= 0.9 and slower <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
