"""`grpc.health.v1.Health` for the server as a whole ("") and for the inference service:
SERVING while the runtime is ready, NOT_SERVING before its models are warmed, while draining
and once a model's batcher has died, like /readyz. (Kubernetes' gRPC probes and grpc-health-probe
call Check.)"""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio

from service.grpc import grpc_predict_v2_pb2 as pb
from service.runtime import Runtime

INFERENCE_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVICES = ("", INFERENCE_SERVICE)


class Health(aio.HealthServicer):
    """The reference servicer, with each status read from the runtime when it is asked for
    rather than set by whatever changes it. A Watch stream is sent the status of the moment
    it starts, and NOT_SERVING once the server stops (`enter_graceful_shutdown`)."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Any) -> Any:
        await self._refresh()
        return await super().Check(request, context)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        await self._refresh()
        await super().Watch(request, context)

    async def _refresh(self) -> None:
        serving = health_pb2.HealthCheckResponse.SERVING
        status = serving if self.runtime.ready else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in SERVICES:
            await self.set(service, status)
