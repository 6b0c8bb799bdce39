"""End to end: a real uvicorn process on a free loopback port, started and stopped here."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.live_service import LiveService, running_service
from tests.service.support import png

UPLOAD_LIMIT = 1_000_000


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    log = tmp_path_factory.mktemp("e2e") / "uvicorn.log"
    env = {"FMNIST_INSTANCE_ID": "e2e-1", "FMNIST_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)}
    with running_service(log, env) as service:
        yield service
    # Stopped by SIGTERM, as a container runtime stops it: uvicorn runs the lifespan's shutdown
    # (batchers stopped) and exits by that same signal.
    assert service.process.returncode in (0, -signal.SIGTERM), service.output()
    assert "Application shutdown complete" in service.output(), service.output()


@pytest.fixture(scope="module")
def server(live: LiveService) -> str:
    return live.url


def test_serving_on_cpu_maps_no_torch_library(live, server):
    """The default backend on CPU is ONNX Runtime, and the process never loads PyTorch."""
    assert httpx.get(f"{server}/readyz").json()["backend"] == "onnxruntime"
    maps = Path(f"/proc/{live.process.pid}/maps").read_text()
    assert "onnxruntime" in maps
    assert "torch" not in maps


def test_serves_real_images(server, samples):
    images, labels = samples
    response = httpx.post(
        f"{server}/classify?model=mynet",
        files=[("file", (f"{i}.png", png(image), "image/png")) for i, image in enumerate(images)],
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-instance-id"] == "e2e-1"
    assert [p["class_id"] for p in response.json()["predictions"]] == labels.tolist()
    raw = httpx.post(
        f"{server}/reconstruct?format=png",
        content=png(images[0]),
        headers={"Content-Type": "image/png"},
    )
    assert raw.status_code == 200 and raw.headers["content-type"] == "image/png"


def batch_histogram(metrics: str) -> tuple[float, float]:
    """(batches of one image, all batches) of mynet's classify operation so far."""
    labels = 'model="mynet",op="classify"'
    ones = re.search(rf'fmnist_batch_size_bucket{{le="1.0",{labels}}} (\S+)', metrics)
    count = re.search(rf"fmnist_batch_size_count{{{labels}}} (\S+)", metrics)
    assert ones and count, metrics
    return float(ones.group(1)), float(count.group(1))


BURST = 48  # FMNIST_MAX_IN_FLIGHT: more at once would be refused by this one process


def test_a_burst_of_concurrent_clients_forms_batches(server, test_split):
    images, labels = test_split[0][:BURST], test_split[1][:BURST]
    bodies = [png(image) for image in images]

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=BURST)
        async with httpx.AsyncClient(base_url=server, limits=limits, timeout=60) as client:
            return await asyncio.gather(
                *(client.post("/classify", files={"file": ("x.png", body)}) for body in bodies)
            )

    ones_before, batches_before = batch_histogram(httpx.get(f"{server}/metrics").text)
    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * BURST
    ones_after, batches_after = batch_histogram(httpx.get(f"{server}/metrics").text)
    batches = batches_after - batches_before
    larger_than_one = batches - (ones_after - ones_before)
    assert larger_than_one >= 1, "no batch of more than one image formed"
    assert batches < BURST
    predicted = np.array([r.json()["predictions"][0]["class_id"] for r in responses])
    assert (predicted == labels).mean() > 0.8


def raw_exchange(port: int, head: bytes, body_chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send `head`, then chunks until the server answers; returns the whole answer and how
    many body bytes were sent before it came."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head)
        connection.settimeout(0.05)
        answer = b""
        for chunk in body_chunks:
            try:
                answer = connection.recv(65536)
                if answer:
                    break
            except TimeoutError:
                pass
            try:
                connection.sendall(chunk)
            except OSError:  # the server closed the connection
                break
            sent += len(chunk)
        connection.settimeout(5)
        while b"}}" not in answer:  # the JSON error body ends with }}
            more = connection.recv(65536)
            if not more:
                break
            answer += more
        return answer, sent


def test_an_oversized_streamed_body_is_refused_while_streaming(server):
    port = int(server.rsplit(":", 1)[1])
    head = (
        b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = 65536
    chunks = (
        b"%x\r\n" % chunk + b"\0" * chunk + b"\r\n" for _ in range(50 * UPLOAD_LIMIT // chunk)
    )
    answer, sent = raw_exchange(port, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b"payload_too_large" in answer
    assert sent < 5 * UPLOAD_LIMIT  # refused long before the 50 MB were sent


def test_a_declared_oversized_body_is_refused_before_it_is_sent(server):
    port = int(server.rsplit(":", 1)[1])
    head = (
        b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Content-Length: 100000000\r\n\r\n"
    )
    answer, sent = raw_exchange(port, head, iter([b"\0" * 1024] * 10))
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert sent < UPLOAD_LIMIT


def test_garbage_does_not_hurt_the_server(server, samples):
    for content in (b"\x89PNG\r\n\x1a\n" + os.urandom(5000), os.urandom(5000), b""):
        response = httpx.post(
            f"{server}/classify", content=content, headers={"Content-Type": "image/png"}
        )
        assert response.status_code in (400, 413), response.text
    good = httpx.post(f"{server}/classify", files={"file": ("a.png", png(samples[0][1]))})
    assert good.json()["predictions"][0]["label"] == "Trouser"
    assert httpx.get(f"{server}/readyz").status_code == 200
