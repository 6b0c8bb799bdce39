"""POST /generate: new garments sampled from the VAE's prior."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from service import latent, plots
from service.dependencies import (
    FormatQuery,
    RuntimeDep,
    ScaleQuery,
    png_response,
    wants_png,
)
from service.errors import error_responses
from service.imaging import png_base64, to_uint8
from service.schemas import PNG_RESPONSE, GenerateResponse

router = APIRouter(tags=["vae"])
MODEL = "vae"
MAX_SEED = 2**63 - 1


@router.post(
    "/generate",
    response_model=GenerateResponse,
    summary="Sample new garments",
    description="Decodes `n` draws from the VAE's standard-normal prior. The same seed gives "
    "the same images; without one a seed is chosen and returned. PNG: the images as a grid.",
    responses={
        200: {"description": "JSON as below, or PNG: the images as a grid", **PNG_RESPONSE},
        **error_responses(401, 406, 422, 503, 504),
    },
)
async def generate(
    request: Request,
    runtime: RuntimeDep,
    n: Annotated[int, Query(ge=1, le=64, description="how many images")] = 16,
    seed: Annotated[int | None, Query(ge=0, le=MAX_SEED, description="random seed")] = None,
    scale: ScaleQuery = 2,
    output_format: FormatQuery = None,
) -> GenerateResponse | Response:
    loaded = runtime.get(MODEL, "/generate", kind="autoencoder")
    assert loaded.latent_dim is not None  # noqa: S101  narrows the type: autoencoders have one
    seed = secrets.randbelow(2**31) if seed is None else seed
    (images,) = await loaded.run("decode", latent.sample_prior(n, loaded.latent_dim, seed))
    if wants_png(request, output_format):
        columns = next(c for c in range(1, n + 1) if c * c >= n)  # ceil(sqrt(n))
        return png_response(await run_in_threadpool(plots.grid, list(images), columns, scale))
    encoded = await run_in_threadpool(lambda: [png_base64(i) for i in to_uint8(images)])
    return GenerateResponse(model=MODEL, seed=seed, images=encoded)
