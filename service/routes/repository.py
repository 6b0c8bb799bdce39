"""The v2 model repository extension over REST: list the models, load a checkpoint, unload a
model (what each does: `service.v2.repository`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam

import ml
from service.dependencies import RuntimeDep
from service.errors import InvalidParameter
from service.jsonbody import json_object
from service.v2 import repository
from service.v2.errors import V2Route
from service.v2.openapi import (
    INDEX,
    INDEX_REQUEST_BODY,
    LOAD_REQUEST_BODY,
    LOADED,
    UNLOAD_REQUEST_BODY,
    UNLOADED,
    v2_error_responses,
)

router = APIRouter(tags=["v2 repository"], route_class=V2Route)
ModelName = Annotated[
    str,
    PathParam(description=f"a model of the repository: {', '.join(ml.MODELS)}", examples=["lenet"]),
]


@router.post(
    "/v2/repository/index",
    summary="Every model of the repository and its state",
    responses={200: INDEX, **v2_error_responses(503)},
    openapi_extra={"requestBody": INDEX_REQUEST_BODY},
)
async def index(request: Request, runtime: RuntimeDep) -> list[dict[str, Any]]:
    only_ready = (await _json(request)).get("ready", False)
    if not isinstance(only_ready, bool):
        raise InvalidParameter('"ready" must be true or false')
    return [
        {key: value for key, value in asdict(entry).items() if value is not None}
        for entry in repository.index(runtime, only_ready)
    ]


@router.post(
    "/v2/repository/models/{name}/load",
    summary="Load a model's checkpoint as it is now: verified, warmed, swapped in atomically",
    description="400 (load_failed) when the checkpoint is missing or altered; the model that "
    "served before keeps serving.",
    responses={200: LOADED, **v2_error_responses(503, 504)},
    openapi_extra={"requestBody": LOAD_REQUEST_BODY},
)
async def load(name: ModelName, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    parameters = (await _json(request)).get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidParameter('"parameters" must be an object (an empty one: a load takes none)')
    version = await repository.load(runtime, name, parameters)
    return {"name": name, "load": True, "version": version}


@router.post(
    "/v2/repository/models/{name}/unload",
    summary="Stop serving a model",
    responses={200: UNLOADED, **v2_error_responses(503)},
    openapi_extra={"requestBody": UNLOAD_REQUEST_BODY},
)
async def unload(name: ModelName, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    await _json(request)
    await runtime.unload(name)
    return {"name": name, "unload": True}


async def _json(request: Request) -> dict[str, Any]:
    """The optional JSON body (`{}` when empty)."""
    body = await request.body()
    if not body.strip():
        return {}
    return json_object(body, "the request body")
