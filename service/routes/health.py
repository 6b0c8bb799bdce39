"""Liveness, readiness and metrics: always open, even when an API key is set."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.dependencies import RuntimeDep
from service.errors import NotAlive, NotReady, error_responses
from service.schemas import Health, Readiness

router = APIRouter(tags=["operations"])


# Load balancers and uptime checks often probe with HEAD: both probes answer it too (the same
# status, no body), outside the OpenAPI document, which lists each operation once.
@router.head("/healthz", include_in_schema=False)
@router.get(
    "/healthz",
    response_model=Health,
    summary="Liveness: the process answers and no model's batcher has died",
    responses=error_responses(503),
)
async def healthz(runtime: RuntimeDep) -> Health:
    if not runtime.alive:
        raise NotAlive("a model's batcher has stopped; restart the process")
    return Health(status="ok", instance_id=runtime.settings.instance_id)


@router.head("/readyz", include_in_schema=False)
@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: every model loaded, warmed and its batchers running",
    responses=error_responses(503),
)
async def readyz(runtime: RuntimeDep) -> Readiness:
    if not runtime.ready:
        raise NotReady("models are not loaded yet, or the service is shutting down")
    return Readiness(
        status="ready",
        backend=runtime.backend,
        device=runtime.device,
        models=list(runtime.models),
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(runtime: RuntimeDep) -> Response:
    body, content_type = runtime.metrics.render()
    return Response(body, media_type=content_type)
