"""POST /explain: which pixels make a classifier give its class (occlusion maps)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import pydantic_core
from fastapi import APIRouter, Query, Request, Response

from ml import CLASS_NAMES
from service import plots
from service.dependencies import (
    FormatQuery,
    InvertQuery,
    RuntimeDep,
    image_route_responses,
    model_query,
    png_response,
    wants_png,
)
from service.explain import BACKGROUND, Occlusion
from service.inputs import read_images
from service.runtime import LoadedModel
from service.schemas import IMAGES_REQUEST_BODY, ExplainResponse

router = APIRouter(tags=["explain"])
OCCLUSION = Occlusion()
DECIMALS = 6  # of the attributions in JSON: a millionth of a probability is below any use


@router.post(
    "/explain",
    response_model=ExplainResponse,
    summary="Explain a classification",
    description="Per image: a 28x28 occlusion map of the class `target` (default: the most "
    "probable class): square patches of the image are set to the background in turn, and each "
    "pixel gets the drop in the class's probability, averaged over the patches covering it. "
    f"{OCCLUSION.passes} forward passes per image. PNG: each input in grey under its map (red "
    "supports the class, blue counts against it), titled with the class and its probability.",
    responses=image_route_responses(
        "each input in grey under its attribution map, titled with the class and its probability"
    ),
    openapi_extra={"requestBody": IMAGES_REQUEST_BODY},
)
async def explain(
    request: Request,
    runtime: RuntimeDep,
    model: Annotated[str, model_query("mynet", "classifier")] = "mynet",
    target: Annotated[
        int | None,
        Query(
            ge=0,
            le=len(CLASS_NAMES) - 1,
            description="class id to explain; without it, each image's most probable class",
        ),
    ] = None,
    invert: InvertQuery = "auto",
    output_format: FormatQuery = None,
) -> ExplainResponse | Response:
    loaded = runtime.get(model, "/explain", kind="classifier")
    png = wants_png(request, output_format)
    images = await read_images(request, invert, runtime.settings, runtime.decoder)
    if png:
        plots.check_chart_rows(len(images), "explanation")
    probabilities = await _probabilities(loaded, images, runtime.settings.max_batch_size)
    result = OCCLUSION.explain(probabilities, target)
    if png:
        chart = await plots.render(
            plots.explanation_chart,
            images,
            result.maps,
            result.class_ids,
            result.probabilities,
            CLASS_NAMES,
        )
        return png_response(chart)
    # Written here rather than dumped by FastAPI through ExplainResponse (which the tests check
    # it matches), as /classify does: validating 784 numbers per image again costs more.
    payload = {
        "model": model,
        "method": "occlusion",
        "patch": OCCLUSION.patch,
        "stride": OCCLUSION.stride,
        "baseline": BACKGROUND,
        "passes": OCCLUSION.passes,
        "explanations": [
            {
                "class_id": class_id,
                "label": CLASS_NAMES[class_id],
                "probability": probability,
                "attribution": attribution.round(DECIMALS).tolist(),
                "scale": round(float(np.abs(attribution).max()), DECIMALS),
            }
            for class_id, probability, attribution in zip(
                result.class_ids.tolist(), result.probabilities.tolist(), result.maps, strict=True
            )
        ],
    }
    return Response(pydantic_core.to_json(payload), media_type="application/json")


async def _probabilities(loaded: LoadedModel, images: np.ndarray, max_batch: int) -> np.ndarray:
    """The calibrated class probabilities of every occlusion input of `images`, asked of the
    model's `probabilities` batcher (no OOD score: nobody reads one for an occluded copy) a few
    whole images at a time (as many as fit in one batch, at least one), each part after the
    last: a request of many images then never holds more than a batch of the queue that other
    requests share, nor builds all its inputs at once."""
    per_part = max(1, max_batch // OCCLUSION.passes)
    parts = []
    for start in range(0, len(images), per_part):
        inputs = OCCLUSION.inputs(images[start : start + per_part])
        (probabilities,) = await loaded.run("probabilities", inputs)
        parts.append(probabilities)
    return np.concatenate(parts)
