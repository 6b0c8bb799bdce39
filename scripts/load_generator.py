"""HTTP load for scripts/bench_serve.py: `total` POSTs of one body over `concurrency` keep-alive
connections, printed as one JSON line of counts, seconds and latency percentiles. Its HTTP
client (`encode_request`, `exchange`) also drives scripts/soak.py.

    python scripts/load_generator.py URL BODY_FILE CONTENT_TYPE CONCURRENCY TOTAL [HEADER=VALUE]

It speaks HTTP/1.1 over raw asyncio sockets and imports nothing heavy, so it starts in a fraction
of a second and costs far less per request than the servers it measures (an httpx-based
generator would be the bottleneck).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np


def encode_request(
    method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    """One HTTP/1.1 request to `url` (keep-alive), as the bytes sent."""
    target = urlsplit(url)
    path = (target.path or "/") + (f"?{target.query}" if target.query else "")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {target.hostname}:{target.port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """Send `request` on an open keep-alive connection; the answer's status and body
    (Content-Length bodies, which is what the servers measured send)."""
    writer.write(request)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("the server closed the connection")
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(status_line.split(b" ", 2)[1]), await reader.readexactly(length)


async def drive(
    url: str,
    body: bytes,
    content_type: str,
    concurrency: int,
    total: int,
    headers: dict[str, str] | None = None,
) -> dict:
    """`total` POSTs of `body` to `url` over `concurrency` keep-alive connections."""
    target = urlsplit(url)
    request = encode_request("POST", url, body, {"Content-Type": content_type, **(headers or {})})
    latencies: list[float] = []
    errors = 0
    remaining = total

    async def client() -> None:
        nonlocal errors, remaining
        reader, writer = await asyncio.open_connection(target.hostname, target.port)
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            status, _ = await exchange(reader, writer, request)
            latencies.append(time.perf_counter() - started)
            errors += status != 200
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


def main(argv: list[str]) -> None:
    url, body_file, content_type, concurrency, total, *extra = argv
    body = Path(body_file).read_bytes()
    headers = dict(header.split("=", 1) for header in extra)
    load = drive(url, body, content_type, int(concurrency), int(total), headers)
    print(json.dumps(asyncio.run(load)))


if __name__ == "__main__":
    main(sys.argv[1:])
