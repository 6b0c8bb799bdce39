"""POST /reconstruct: the VAE's round trip of each image."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from service import plots
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
from service.inputs import read_images
from service.schemas import IMAGES_REQUEST_BODY, Reconstruction, ReconstructResponse

router = APIRouter(tags=["vae"])
MODEL = "vae"


@router.post(
    "/reconstruct",
    response_model=ReconstructResponse,
    summary="VAE round trip",
    description="Encodes each image to its latent mean and decodes it. Per image: the "
    "reconstruction (base64 PNG and 0-255 pixels) and its error. PNG: originals above "
    "reconstructions, 16 pairs a row, enlarged `scale` times; a picture of more than "
    f"{plots.MAX_GRID_PIXELS} pixels is refused (422) before the model runs: 256 images fit "
    "up to scale 6, 64 up to scale 12.",
    responses=image_route_responses("originals above reconstructions"),
    openapi_extra={"requestBody": IMAGES_REQUEST_BODY},
)
async def reconstruct(
    request: Request,
    runtime: RuntimeDep,
    scale: ScaleQuery = 4,
    invert: InvertQuery = "auto",
    output_format: FormatQuery = None,
) -> ReconstructResponse | Response:
    loaded = runtime.get(MODEL, "/reconstruct", kind="autoencoder")
    images = await read_images(request, invert, runtime.settings, runtime.decoder)
    as_png = wants_png(request, output_format)
    if as_png:  # a picture too large is refused before the model runs, not after
        plots.check_comparison_grid_size(len(images), scale)
    outputs, bce, kl = await loaded.run("reconstruct", images)
    if as_png:
        grid = await run_in_threadpool(plots.comparison_grid, images, outputs, scale)
        return png_response(grid)
    return await run_in_threadpool(_response, images, outputs, bce.tolist(), kl.tolist())


def _response(
    images: np.ndarray, outputs: np.ndarray, bce: list[float], kl: list[float]
) -> ReconstructResponse:
    mse = ((outputs - images) ** 2).mean(axis=(1, 2)).tolist()
    pixels = to_uint8(outputs)
    return ReconstructResponse(
        model=MODEL,
        reconstructions=[
            Reconstruction(png=png_base64(p), pixels=p.tolist(), bce=b, kl=k, mse=m)
            for p, b, k, m in zip(pixels, bce, kl, mse, strict=True)
        ],
    )
