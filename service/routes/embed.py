"""POST /embed: feature vectors, placed on the training-set PCA map stored with the model."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response

from ml import CLASS_NAMES, EMBEDDING_LAYERS
from ml.pca_map import project
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
from service.errors import InvalidParameter
from service.inputs import read_images
from service.schemas import IMAGES_REQUEST_BODY, Embedding, EmbedResponse

router = APIRouter(tags=["embed"])
LAYERS = list(dict.fromkeys(layer for layers in EMBEDDING_LAYERS.values() for layer in layers))


@router.post(
    "/embed",
    response_model=EmbedResponse,
    summary="Feature vectors and their place on the training-set map",
    description="Classifiers: the penultimate features or the logits; the VAE: the latent "
    "mean. Each vector is also projected onto the 2-D PCA map fitted on training images when "
    "the model was trained. PNG: that map with the inputs placed on it.",
    responses=image_route_responses("the training-set PCA map with the inputs placed on it"),
    openapi_extra={"requestBody": IMAGES_REQUEST_BODY},
)
async def embed(
    request: Request,
    runtime: RuntimeDep,
    model: Annotated[str, model_query("mynet")] = "mynet",
    layer: Annotated[
        str | None,
        Query(
            description="penultimate or logits (classifiers), latent (vae); default: the "
            "model's first; a layer the model does not have is answered 422",
            json_schema_extra={"enum": LAYERS},
        ),
    ] = None,
    invert: InvertQuery = "auto",
    output_format: FormatQuery = None,
) -> EmbedResponse | Response:
    loaded = runtime.get(model, "/embed")
    layer = layer or loaded.layers[0]
    if layer not in loaded.layers:
        raise InvalidParameter(
            f"layer {layer!r} does not exist in {model}; choose {' or '.join(loaded.layers)}"
        )
    images = await read_images(request, invert, runtime.settings, runtime.decoder)
    # A classifier's vectors come with their out-of-distribution score and flag.
    vectors, *ood = await loaded.run(f"embed:{layer}", images)
    scores, flags = ood or ([None] * len(vectors), None)
    pca_map = loaded.card["embedding_maps"][layer]
    coordinates = project(vectors, pca_map)
    if wants_png(request, output_format):
        title = f"{model} {layer}: training-set PCA map"
        chart = await plots.render(
            plots.embedding_map, pca_map, coordinates, CLASS_NAMES, title, flags
        )
        return png_response(chart)
    return EmbedResponse(
        model=model,
        layer=layer,
        dimension=vectors.shape[1],
        explained_variance_ratio=pca_map["explained_variance_ratio"],
        embeddings=[
            Embedding(
                vector=np.round(v, 6).tolist(),
                coordinates=np.round(c, 6).tolist(),
                ood_score=None if score is None else float(score),
                out_of_distribution=None if flags is None else bool(flags[i]),
            )
            for i, (v, c, score) in enumerate(zip(vectors, coordinates, scores, strict=True))
        ],
    )
