"""gRPC load for scripts/bench_serve.py --protocols: `total` ModelInfer calls of one serialized
request over `concurrency` connections (a channel each), printed as the same JSON line as
scripts/load_generator.py.

    python scripts/grpc_load_generator.py TARGET REQUEST_FILE CONCURRENCY TOTAL

The request is sent as the bytes in REQUEST_FILE and the answer is not parsed, so the client
costs about what load_generator.py's raw HTTP does.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import grpc
import numpy as np

METHOD = "/inference.GRPCInferenceService/ModelInfer"


async def drive(target: str, request: bytes, concurrency: int, total: int) -> dict:
    latencies: list[float] = []
    errors = 0
    remaining = total

    async def client() -> None:
        nonlocal errors, remaining
        # A pool of its own per channel: by default channels to one target share a
        # connection, which would put every call on one worker.
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            infer = channel.unary_unary(METHOD)  # bytes in, bytes out
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                try:
                    await infer(request, timeout=60)
                except grpc.aio.AioRpcError:
                    errors += 1
                latencies.append(time.perf_counter() - started)

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
    target, request_file, concurrency, total = argv
    request = Path(request_file).read_bytes()
    print(json.dumps(asyncio.run(drive(target, request, int(concurrency), int(total)))))


if __name__ == "__main__":
    main(sys.argv[1:])
