"""The Open Inference Protocol v2 over REST (as KServe, Triton and MLServer speak it), with
Triton's binary tensor data extension. Models and tensors: `service.v2.catalog`.

`public` (server metadata, liveness, readiness) stays open like the other probes; `router`
(model metadata, readiness, inference) is behind the API key when one is set. Errors are the
protocol's `{"error": "..."}` (`service.v2.errors`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service.dependencies import RuntimeDep
from service.errors import NotFound, NotReady
from service.runtime import Runtime
from service.v2 import catalog, inference
from service.v2.errors import V2Route
from service.v2.tensors import HEADER_LENGTH, encode_response, parse_request

SERVER_NAME = "fmnist-service"
EXTENSIONS = ["binary_tensor_data", "model_repository"]
THREAD_OVER_BYTES = 64 * 1024  # responses this big are built off the event loop

public = APIRouter(tags=["v2"], route_class=V2Route)
router = APIRouter(tags=["v2"], route_class=V2Route)
fallback = APIRouter(route_class=V2Route, include_in_schema=False)


@public.get("/v2", summary="v2 server metadata")
async def server_metadata(request: Request) -> dict[str, Any]:
    return {
        "name": SERVER_NAME,
        "version": request.app.version,
        "extensions": EXTENSIONS,
    }


@public.get("/v2/health/live", summary="v2 liveness")
async def live() -> dict[str, bool]:
    return {"live": True}


@public.get("/v2/health/ready", summary="v2 readiness: every model loaded and warmed")
async def ready(runtime: RuntimeDep) -> JSONResponse:
    return JSONResponse({"ready": runtime.ready}, 200 if runtime.ready else 503)


@router.get("/v2/models/{name}", summary="v2 model metadata")
@router.get("/v2/models/{name}/versions/{version}", summary="v2 model metadata, one version")
async def model_metadata(
    name: str, runtime: RuntimeDep, version: str | None = None
) -> dict[str, Any]:
    return await inference.metadata(_find(runtime, name, version))


@router.get("/v2/models/{name}/ready", summary="v2 model readiness")
@router.get("/v2/models/{name}/versions/{version}/ready", summary="v2 model readiness, one version")
async def model_ready(name: str, runtime: RuntimeDep, version: str | None = None) -> dict[str, Any]:
    view = _find(runtime, name, version)
    return {"name": view.name, "ready": True}


@router.post(
    "/v2/models/{name}/infer",
    summary="v2 inference",
    description="JSON, or JSON followed by binary tensors (Inference-Header-Content-Length).",
)
@router.post("/v2/models/{name}/versions/{version}/infer", summary="v2 inference, one version")
async def infer(
    name: str, request: Request, runtime: RuntimeDep, version: str | None = None
) -> Response:
    view = _find(runtime, name, version)
    body = await request.body()
    header_length = request.headers.get(HEADER_LENGTH)
    parsed = await runtime.decoder.run(parse_request, body, header_length)
    outputs = await inference.infer(view, parsed, runtime.settings, runtime.decoder)
    document: dict[str, Any] = {"model_name": view.name, "model_version": view.version}
    if parsed.id is not None:
        document["id"] = parsed.id
    if sum(output.data.size for output in outputs) * 4 > THREAD_OVER_BYTES:
        content, json_length = await run_in_threadpool(encode_response, document, outputs)
    else:
        content, json_length = encode_response(document, outputs)
    if json_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(json_length)},
    )


@fallback.api_route(
    "/v2/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
)
async def no_route(request: Request) -> Response:
    raise NotFound(f"no v2 route {request.method} {request.url.path}")


def _find(runtime: Runtime, name: str, version: str | None) -> catalog.View:
    if not runtime.serving:
        raise NotReady("models are not loaded yet, or the service is shutting down")
    return catalog.find(runtime, name, version)
