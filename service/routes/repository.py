"""The v2 model repository extension: list the models, load a checkpoint, unload a model.

The repository is the checkpoint folder (FMNIST_CHECKPOINT_DIR) and its models are the
registered ones (`lenet`, `mynet`, `vae`; `vae-decoder` comes and goes with `vae`). A load reads
the folder as it is at that moment, verifies the hashes, warms the model and swaps it in
(`Runtime.load`). Each server process holds its own models: with several workers, a load
reaches the one process that answers it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam

import ml
from service.dependencies import RuntimeDep
from service.errors import InvalidParameter
from service.jsonbody import json_object
from service.v2.catalog import version_of
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
    entries = []
    for name in ml.MODELS:
        loaded = runtime.models.get(name)
        if loaded is not None:
            version = version_of(loaded)
            entries.append({"name": name, "version": version, "state": "READY", "reason": ""})
        elif not only_ready:
            entries.append({"name": name, "state": "UNAVAILABLE", "reason": "unloaded"})
    return entries


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
    if parameters:
        raise InvalidParameter(
            "load takes no parameters (no config or file overrides): it loads the checkpoint "
            "folder's files, whose cards vouch for them"
        )
    loaded = await runtime.load(name)
    return {"name": name, "load": True, "version": version_of(loaded)}


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
