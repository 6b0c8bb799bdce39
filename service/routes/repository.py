"""The v2 model repository extension: list the models, load a checkpoint, unload a model.

The repository is the checkpoint folder (FMNIST_CHECKPOINT_DIR) and its models are the
registered ones (`lenet`, `mynet`, `vae`; `vae-decoder` comes and goes with `vae`). A load reads
the folder as it is at that moment, verifies the hashes, warms the model and swaps it in
(`Runtime.load`). Each server process holds its own models: with several workers, a load
reaches the one process that answers it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

import ml
from service.dependencies import RuntimeDep
from service.errors import InvalidParameter
from service.jsonbody import json_object
from service.v2.catalog import version_of
from service.v2.errors import V2Route

router = APIRouter(tags=["v2 repository"], route_class=V2Route)


@router.post("/v2/repository/index", summary="Every model of the repository and its state")
async def index(request: Request, runtime: RuntimeDep) -> list[dict[str, Any]]:
    only_ready = bool((await _json(request)).get("ready", False))
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
)
async def load(name: str, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    if (await _json(request)).get("parameters"):
        raise InvalidParameter(
            "load takes no parameters (no config or file overrides): it loads the checkpoint "
            "folder's files, whose cards vouch for them"
        )
    loaded = await runtime.load(name)
    return {"name": name, "load": True, "version": version_of(loaded)}


@router.post("/v2/repository/models/{name}/unload", summary="Stop serving a model")
async def unload(name: str, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    await _json(request)
    await runtime.unload(name)
    return {"name": name, "unload": True}


async def _json(request: Request) -> dict[str, Any]:
    """The optional JSON body (`{}` when empty)."""
    body = await request.body()
    if not body.strip():
        return {}
    return json_object(body, "the request body")
