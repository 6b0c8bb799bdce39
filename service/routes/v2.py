"""The Open Inference Protocol v2 over REST (as KServe, Triton and MLServer speak it), with
Triton's binary tensor data extension. Models and tensors: `service.v2.catalog`.

`public` (server metadata, liveness, readiness) stays open like the other probes; `router`
(model metadata, readiness, inference) is behind the API key when one is set. Errors are the
protocol's `{"error": "..."}` (`service.v2.errors`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from service.dependencies import RuntimeDep
from service.errors import MethodNotAllowed, NotFound
from service.routes import repository
from service.runtime import Runtime
from service.v2 import catalog, inference
from service.v2.errors import V2Route
from service.v2.openapi import (
    INFER_REQUEST_BODY,
    INFER_RESPONSE,
    LIVE,
    MODEL_METADATA,
    MODEL_READY,
    NOT_READY,
    READY,
    SERVER_METADATA,
    v2_error_responses,
)
from service.v2.tensors import HEADER_LENGTH, encode_response, parse_request

THREAD_OVER_BYTES = 64 * 1024  # responses this big are built off the event loop

public = APIRouter(tags=["v2"], route_class=V2Route)
router = APIRouter(tags=["v2"], route_class=V2Route)
fallback = APIRouter(route_class=V2Route, include_in_schema=False)

ModelName = Annotated[
    str,
    PathParam(
        description="a loaded model; an autoencoder is also <name>-decoder", examples=["mynet"]
    ),
]
Version = Annotated[str, PathParam(description="the loaded version, as the model's metadata says")]
MODEL_ERRORS = v2_error_responses(503)  # besides the 4XX every v2 route documents
INFER_ERRORS = v2_error_responses(503, 504)


@public.get("/v2", summary="v2 server metadata", responses={200: SERVER_METADATA})
async def server_metadata(request: Request) -> dict[str, Any]:
    return {
        "name": catalog.SERVER_NAME,
        "version": request.app.version,
        "extensions": list(catalog.EXTENSIONS),
    }


@public.get("/v2/health/live", summary="v2 liveness", responses={200: LIVE})
async def live() -> dict[str, bool]:
    return {"live": True}


@public.get(
    "/v2/health/ready",
    summary="v2 readiness: every model loaded and warmed",
    responses={200: READY, 503: NOT_READY},
)
async def ready(runtime: RuntimeDep) -> JSONResponse:
    return JSONResponse({"ready": runtime.ready}, 200 if runtime.ready else 503)


# Each route with a version in its path has a function of its own: one function under both paths
# would give the route without a version an undocumented `version` query parameter.
@router.get(
    "/v2/models/{name}",
    summary="v2 model metadata",
    responses={200: MODEL_METADATA, **MODEL_ERRORS},
)
async def model_metadata(name: ModelName, runtime: RuntimeDep) -> dict[str, Any]:
    return await inference.metadata(catalog.find_serving(runtime, name, None))


@router.get(
    "/v2/models/{name}/versions/{version}",
    summary="v2 model metadata, one version",
    responses={200: MODEL_METADATA, **MODEL_ERRORS},
)
async def version_metadata(
    name: ModelName, version: Version, runtime: RuntimeDep
) -> dict[str, Any]:
    return await inference.metadata(catalog.find_serving(runtime, name, version))


@router.get(
    "/v2/models/{name}/ready",
    summary="v2 model readiness",
    responses={200: MODEL_READY, **MODEL_ERRORS},
)
async def model_ready(name: ModelName, runtime: RuntimeDep) -> dict[str, Any]:
    return {"name": catalog.find_serving(runtime, name, None).name, "ready": True}


@router.get(
    "/v2/models/{name}/versions/{version}/ready",
    summary="v2 model readiness, one version",
    responses={200: MODEL_READY, **MODEL_ERRORS},
)
async def version_ready(name: ModelName, version: Version, runtime: RuntimeDep) -> dict[str, Any]:
    return {"name": catalog.find_serving(runtime, name, version).name, "ready": True}


INFER_DESCRIPTION = "JSON, or JSON followed by binary tensors (Inference-Header-Content-Length)."


@router.post(
    "/v2/models/{name}/infer",
    summary="v2 inference",
    description=INFER_DESCRIPTION,
    responses={200: INFER_RESPONSE, **INFER_ERRORS},
    openapi_extra={"requestBody": INFER_REQUEST_BODY},
)
async def infer(name: ModelName, request: Request, runtime: RuntimeDep) -> Response:
    return await _infer(catalog.find_serving(runtime, name, None), request, runtime)


@router.post(
    "/v2/models/{name}/versions/{version}/infer",
    summary="v2 inference, one version",
    description=INFER_DESCRIPTION,
    responses={200: INFER_RESPONSE, **INFER_ERRORS},
    openapi_extra={"requestBody": INFER_REQUEST_BODY},
)
async def infer_version(
    name: ModelName, version: Version, request: Request, runtime: RuntimeDep
) -> Response:
    return await _infer(catalog.find_serving(runtime, name, version), request, runtime)


async def _infer(view: catalog.View, request: Request, runtime: Runtime) -> Response:
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
    """404, or 405 with `Allow` when the path is a v2 route's and only the method is wrong."""
    allowed = sorted(
        method
        for route in [*public.routes, *router.routes, *repository.router.routes]
        if isinstance(route, APIRoute) and route.matches(request.scope)[0] != Match.NONE
        for method in route.methods
    )
    if allowed:
        raise MethodNotAllowed(
            f"{request.method} is not allowed on {request.url.path}",
            headers={"Allow": ", ".join(allowed)},
        )
    raise NotFound(f"no v2 route {request.method} {request.url.path}")
