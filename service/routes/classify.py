"""POST /classify: class probabilities for each image."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import pydantic_core
from fastapi import APIRouter, Query, Request, Response

from ml import CLASS_NAMES
from service import plots
from service.dependencies import (
    CalibratedQuery,
    FormatQuery,
    InvertQuery,
    OodQuery,
    RuntimeDep,
    image_route_responses,
    model_query,
    png_response,
    wants_png,
)
from service.inputs import read_images
from service.ood import ood_summary, refuse_flagged
from service.schemas import IMAGES_REQUEST_BODY, ClassifyResponse

router = APIRouter(tags=["classify"])


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    summary="Classify garments",
    description="Per image: label, class id, confidence, the top-k classes and all 10 "
    "probabilities (calibrated unless `calibrated=false`), and an out-of-distribution score "
    "with its flag; `ood=refuse` answers 422 naming the flagged images instead. PNG: each input "
    "beside a bar chart of its probabilities.",
    responses=image_route_responses("each input beside a bar chart of its probabilities"),
    openapi_extra={"requestBody": IMAGES_REQUEST_BODY},
)
async def classify(
    request: Request,
    runtime: RuntimeDep,
    model: Annotated[str, model_query("mynet", "classifier")] = "mynet",
    top_k: Annotated[int, Query(ge=1, le=len(CLASS_NAMES))] = 3,
    calibrated: CalibratedQuery = True,
    ood: OodQuery = "flag",
    invert: InvertQuery = "auto",
    output_format: FormatQuery = None,
) -> ClassifyResponse | Response:
    loaded = runtime.get(model, "/classify", kind="classifier")
    png = wants_png(request, output_format)
    images = await read_images(request, invert, runtime.settings, runtime.decoder)
    if png:
        plots.check_chart_rows(len(images))
    calibrated_probabilities, uncalibrated, scores, flags = await loaded.run("classify", images)
    if ood == "refuse":
        refuse_flagged(loaded, flags)
    probabilities = calibrated_probabilities if calibrated else uncalibrated
    if png:
        chart = await plots.render(
            plots.classification_chart, images, probabilities, CLASS_NAMES, flags
        )
        return png_response(chart)
    # Written here rather than validated and dumped by FastAPI through ClassifyResponse (the
    # documented shape, which the tests check it matches): a few percent of a worker's time
    # per single-image request.
    payload = {
        "model": model,
        "class_names": CLASS_NAMES,
        "calibrated": calibrated,
        **ood_summary(loaded),
        "predictions": [
            _prediction(probs, top_k, score, flag)
            for probs, score, flag in zip(
                probabilities, scores.tolist(), flags.tolist(), strict=True
            )
        ],
    }
    return Response(pydantic_core.to_json(payload), media_type="application/json")


def _prediction(probabilities: np.ndarray, top_k: int, score: float, flag: bool) -> dict:
    values = probabilities.tolist()  # Python floats: cheaper than numpy scalars for ten values
    ranked = sorted(range(len(values)), key=values.__getitem__, reverse=True)[:top_k]
    best = ranked[0]
    return {
        "label": CLASS_NAMES[best],
        "class_id": best,
        "confidence": values[best],
        "top_k": [
            {"class_id": c, "label": CLASS_NAMES[c], "probability": values[c]} for c in ranked
        ],
        "probabilities": values,
        "ood_score": score,
        "out_of_distribution": flag,
    }
