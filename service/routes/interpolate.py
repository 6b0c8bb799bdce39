"""POST /interpolate: frames decoded along the latent path between two images."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from service import latent, plots
from service.dependencies import (
    FormatQuery,
    InvertQuery,
    RuntimeDep,
    ScaleQuery,
    image_route_responses,
    png_response,
    wants_png,
)
from service.imaging import png_base64, to_uint8
from service.inputs import read_pair
from service.schemas import PAIR_REQUEST_BODY, InterpolateResponse

router = APIRouter(tags=["vae"])
MODEL = "vae"


@router.post(
    "/interpolate",
    response_model=InterpolateResponse,
    summary="Morph one garment into another",
    description="Encodes `start` and `end` to their latent means and decodes `steps` evenly "
    "spaced points between them, both ends included. PNG: the frames as one strip.",
    responses=image_route_responses("the frames as one strip"),
    openapi_extra={"requestBody": PAIR_REQUEST_BODY},
)
async def interpolate(
    request: Request,
    runtime: RuntimeDep,
    steps: Annotated[int, Query(ge=2, le=64, description="frames, start and end included")] = 10,
    method: Annotated[latent.Method, Query(description="straight line or great circle")] = (
        "linear"
    ),
    scale: ScaleQuery = 2,
    invert: InvertQuery = "auto",
    output_format: FormatQuery = None,
) -> InterpolateResponse | Response:
    loaded = runtime.get(MODEL, "/interpolate", kind="autoencoder")
    pair = await read_pair(request, invert, runtime.settings, runtime.decoder)
    (means,) = await loaded.run("embed:latent", pair)
    latents = latent.interpolate(means[0], means[1], steps, method)
    (frames,) = await loaded.run("decode", latents)
    if wants_png(request, output_format):
        strip = await run_in_threadpool(plots.grid, list(frames), steps, scale)
        return png_response(strip)
    encoded = await run_in_threadpool(lambda: [png_base64(f) for f in to_uint8(frames)])
    return InterpolateResponse(
        model=MODEL,
        method=method,
        steps=steps,
        frames=encoded,
        latents=np.round(latents, 6).tolist(),
    )
