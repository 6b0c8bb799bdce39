"""The gRPC server of one worker: the inference service, health and reflection, on
FMNIST_GRPC_HOST:FMNIST_GRPC_PORT, in the event loop that serves HTTP.

Every worker listens on the same port with SO_REUSEPORT (gRPC's default on Linux), so the kernel
spreads new connections over the workers as it does HTTP's; `fmnist-serve` first checks that no
other server holds the port (`service.server`). Messages are limited to FMNIST_MAX_UPLOAD_BYTES,
as HTTP bodies are; a larger one is refused RESOURCE_EXHAUSTED by gRPC itself.

Stopping (`close`, then `closed`) refuses new calls and connections at once and gives the calls
in progress the grace time to finish; the drain calls it when it closes the HTTP listener
(`service.drain`), and the app's shutdown waits for it before the models stop.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from service.grpc.calls import Calls
from service.grpc.health import INFERENCE_SERVICE, Health
from service.grpc.servicer import InferenceServicer
from service.metrics import Metrics
from service.runtime import Runtime, StartupError

log = logging.getLogger(__name__)
SERVICE_NAMES = (
    INFERENCE_SERVICE,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)


class GrpcServer:
    def __init__(self, runtime: Runtime, metrics: Metrics, version: str) -> None:
        settings = runtime.settings
        self.settings = settings
        self.health = Health(runtime)
        self.server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 1),
                ("grpc.max_receive_message_length", settings.max_upload_bytes),
                ("grpc.max_send_message_length", -1),
            ]
        )
        calls = Calls(settings, metrics)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(runtime, calls, version), self.server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(SERVICE_NAMES, self.server)
        self._stopping: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Listen and serve; the port (the one chosen, for port 0). `StartupError` when the
        address cannot be bound."""
        host, port = self.settings.grpc_host, self.settings.grpc_port
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = self.server.add_insecure_port(address)
        except RuntimeError as exc:  # grpcio raises where older releases returned 0
            raise StartupError(f"gRPC cannot listen on {address}: {exc}") from None
        if not bound:
            raise StartupError(f"gRPC cannot listen on {address}")
        await self.server.start()
        log.info("gRPC (Open Inference Protocol v2) listening on %s:%d", host, bound)
        return bound

    def close(self, grace_s: float) -> None:
        """Stop taking calls now; those in progress have `grace_s` to finish, then are
        cancelled. Only the first call counts."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._stop(grace_s))

    async def closed(self, grace_s: float) -> None:
        """`close(grace_s)` (unless already closing), and wait until the server has stopped."""
        self.close(grace_s)
        assert self._stopping is not None  # noqa: S101  set by close
        await self._stopping

    async def _stop(self, grace_s: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
