"""SIGTERM over gRPC, on a real `fmnist-serve --workers 2` with gRPC in both workers: readiness
(the health service and ServerReady) fails at once, calls in progress are answered, a call on
a new connection is served during FMNIST_DRAIN_DELAY_SECONDS, new connections are refused after
it, and the server exits 0 within FMNIST_DRAIN_SECONDS."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.live_service import free_port
from tests.service.test_drain import fmnist_serve
from tests.v2.grpc_support import pixels_input

BATCH_WAIT_MS = 2500  # each call waits this long in its batch: it outlasts the delay
DELAY_S = 1.0
DRAIN_S = 10.0
CALLS = 8


def health(target: str) -> int:
    """The health service's answer, on a new connection."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status


def infer(target: str) -> np.ndarray:
    client = triton.InferenceServerClient(target)
    try:
        image = pixels_input(np.zeros((1, 1, 28, 28), np.float32))
        return client.infer("lenet", [image], client_timeout=20).as_numpy("class_id")
    finally:
        client.close()


def test_sigterm_drains_grpc_in_every_worker(tmp_path) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    env = {
        "FMNIST_GRPC_PORT": str(port),
        "FMNIST_MODELS": "lenet",
        "FMNIST_MAX_BATCH_WAIT_MS": str(BATCH_WAIT_MS),
        "FMNIST_DRAIN_SECONDS": str(DRAIN_S),
        "FMNIST_DRAIN_DELAY_SECONDS": str(DELAY_S),
    }
    with fmnist_serve(tmp_path, workers=2, **env) as server:
        assert server.output().count("gRPC (Open Inference Protocol v2) listening") == 2
        assert health(target) == health_pb2.HealthCheckResponse.SERVING
        with ThreadPoolExecutor(CALLS + 1) as pool:
            in_flight = [pool.submit(infer, target) for _ in range(CALLS)]
            time.sleep(0.5)  # received, and waiting in their batches
            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            time.sleep(0.2)  # the supervisor passes it on within 50 ms
            assert health(target) == health_pb2.HealthCheckResponse.NOT_SERVING
            assert not triton.InferenceServerClient(target).is_server_ready()
            during_delay = pool.submit(infer, target)
            answers = [call.result(timeout=30) for call in in_flight]
            assert time.monotonic() - signalled > DELAY_S  # answered after the listener closed
            assert answers == [answers[0]] * CALLS
            assert during_delay.result(timeout=30).shape == (1,)
        try:
            infer(target)
        except InferenceServerException as refused:
            assert refused.status() == str(grpc.StatusCode.UNAVAILABLE)
        else:
            raise AssertionError("a new connection was served after the drain delay")
        assert server.process.wait(timeout=DRAIN_S + 5) == 0
        assert time.monotonic() - signalled < DRAIN_S
