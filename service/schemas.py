"""Response models (what each endpoint returns as JSON) and the OpenAPI request-body schemas."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PNG_B64_EXAMPLE = "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAA..."


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. invalid_image")
    message: str = Field(description="what went wrong and how to fix it")


class ErrorResponse(BaseModel):
    model_config = _example({"error": {"code": "invalid_image", "message": "file 1: empty file"}})
    error: ErrorDetail


class ClassScore(BaseModel):
    class_id: int
    label: str
    probability: float


class Prediction(BaseModel):
    label: str = Field(description="the most probable class")
    class_id: int
    confidence: float = Field(description="probability of that class")
    top_k: list[ClassScore] = Field(description="the top_k classes, most probable first")
    probabilities: list[float] = Field(description="all 10 probabilities, indexed by class_id")


class ClassifyResponse(BaseModel):
    model_config = _example(
        {
            "model": "mynet",
            "class_names": ["T-shirt/top", "Trouser", "...", "Ankle boot"],
            "predictions": [
                {
                    "label": "Trouser",
                    "class_id": 1,
                    "confidence": 0.991,
                    "top_k": [
                        {"class_id": 1, "label": "Trouser", "probability": 0.991},
                        {"class_id": 3, "label": "Dress", "probability": 0.006},
                    ],
                    "probabilities": [0.001, 0.991, 0.0, 0.006, 0.0, 0.0, 0.002, 0.0, 0.0, 0.0],
                }
            ],
        }
    )
    model: str
    class_names: list[str] = Field(description="class names indexed by class_id")
    predictions: list[Prediction] = Field(description="one per input image, in order")


class Embedding(BaseModel):
    vector: list[float]
    coordinates: list[float] = Field(description="[x, y] on the training-set PCA map")


class EmbedResponse(BaseModel):
    model_config = _example(
        {
            "model": "mynet",
            "layer": "penultimate",
            "dimension": 128,
            "explained_variance_ratio": [0.31, 0.18],
            "embeddings": [{"vector": [0.0, 1.73, "..."], "coordinates": [4.2, -1.3]}],
        }
    )
    model: str
    layer: str
    dimension: int = Field(description="length of each vector")
    explained_variance_ratio: list[float] = Field(description="of the map's two axes")
    embeddings: list[Embedding] = Field(description="one per input image, in order")


class Reconstruction(BaseModel):
    png: str = Field(description="the 28x28 reconstruction as a base64 PNG")
    pixels: list[list[int]] = Field(description="the reconstruction, 28x28 ints 0-255")
    bce: float = Field(description="binary cross-entropy to the input, summed over pixels (nats)")
    kl: float = Field(description="KL divergence of the latent posterior to the prior (nats)")
    mse: float = Field(description="mean squared pixel error, pixels in [0, 1]")


class ReconstructResponse(BaseModel):
    model_config = _example(
        {
            "model": "vae",
            "reconstructions": [
                {
                    "png": PNG_B64_EXAMPLE,
                    "pixels": [[0, 0, "..."]],
                    "bce": 231.4,
                    "kl": 14.9,
                    "mse": 0.012,
                }
            ],
        }
    )
    model: str
    reconstructions: list[Reconstruction] = Field(description="one per input image, in order")


class InterpolateResponse(BaseModel):
    model_config = _example(
        {
            "model": "vae",
            "method": "slerp",
            "steps": 3,
            "frames": [PNG_B64_EXAMPLE, PNG_B64_EXAMPLE, PNG_B64_EXAMPLE],
            "latents": [[0.1, -0.5, "..."], [0.3, -0.1, "..."], [0.4, 0.2, "..."]],
        }
    )
    model: str
    method: Literal["linear", "slerp"]
    steps: int
    frames: list[str] = Field(description="28x28 base64 PNGs, start first, end last")
    latents: list[list[float]] = Field(description="the latent vector of each frame")


class GenerateResponse(BaseModel):
    model_config = _example({"model": "vae", "seed": 7, "images": [PNG_B64_EXAMPLE]})
    model: str
    seed: int = Field(description="the seed used; send it again for the same images")
    images: list[str] = Field(description="28x28 base64 PNGs")


class ModelInfo(BaseModel):
    model_config = _example(
        {
            "name": "mynet",
            "kind": "classifier",
            "description": "conv 32-64-64 (3x3, BatchNorm), 2 max-pools, fc 4096-128-10",
            "parameters": 581610,
            "backend": "onnxruntime",
            "device": "cpu",
            "sha256": "f4348681926799db4799066d7780d2cce7717d661dedcf9061e020d3610b3d89",
            "version": "f43486819267",
            "trained_at": None,
            "test_metrics": {"loss": 0.243, "accuracy": 0.9414},
            "layers": ["penultimate", "logits"],
            "class_names": ["T-shirt/top", "Trouser", "..."],
            "latent_dim": None,
        }
    )
    name: str
    kind: Literal["classifier", "autoencoder"]
    description: str
    parameters: int
    backend: Literal["onnxruntime", "torch"] = Field(description="what runs the model")
    device: str
    sha256: str = Field(description="sha256 of the weights file, verified at load")
    version: str = Field(description="the loaded checkpoint: its sha256's first 12 hex digits")
    trained_at: str | None = Field(
        description="when training finished (UTC, ISO 8601); null for cards that predate it"
    )
    test_metrics: dict[str, float] = Field(description="scalar test-set metrics from the card")
    layers: list[str] = Field(description="values accepted by /embed?layer=")
    class_names: list[str] = Field(description="empty for the autoencoder")
    latent_dim: int | None = Field(description="the autoencoder's latent size, else null")


class ModelList(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    model_config = _example({"status": "ok", "instance_id": "web-1"})
    status: Literal["ok"]
    instance_id: str


class Readiness(BaseModel):
    model_config = _example(
        {"status": "ready", "backend": "onnxruntime", "device": "cpu", "models": ["lenet", "mynet"]}
    )
    status: Literal["ready"]
    backend: Literal["onnxruntime", "torch"]
    device: str
    models: list[str]


# Request bodies are read by service.inputs (several content types on one route), so their
# OpenAPI description is written out here rather than derived from a parameter.
_BINARY = {"type": "string", "format": "binary"}
_PIXELS = {
    "type": "array",
    "description": "28 rows of 28 ints 0-255 or floats 0-1",
    "items": {"type": "array", "items": {"type": "number"}},
}
_IMAGE_OR_PIXELS = {"oneOf": [{"type": "string", "description": "base64 image file"}, _PIXELS]}
_RAW_IMAGE = {"schema": _BINARY}

IMAGES_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "One or more images (up to FMNIST_MAX_IMAGES_PER_REQUEST), in any one style.",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "array", "items": _BINARY}},
                "required": ["file"],
            }
        },
        "image/png": _RAW_IMAGE,
        "image/jpeg": _RAW_IMAGE,
        "image/*": _RAW_IMAGE,
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "images": {"type": "array", "items": {"type": "string"}},
                    "pixels": {"type": "array", "items": _PIXELS},
                },
                "description": "exactly one of images (base64 files) or pixels",
            },
            "examples": {
                "base64": {"value": {"images": [PNG_B64_EXAMPLE]}},
                "pixels": {"value": {"pixels": [[[0] * 28] * 28]}},
            },
        },
    },
}

PAIR_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "The two images to interpolate between.",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"start": _BINARY, "end": _BINARY},
                "required": ["start", "end"],
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"start": _IMAGE_OR_PIXELS, "end": _IMAGE_OR_PIXELS},
                "required": ["start", "end"],
            },
            "example": {"start": PNG_B64_EXAMPLE, "end": PNG_B64_EXAMPLE},
        },
    },
}

PNG_RESPONSE = {"content": {"image/png": {"schema": _BINARY}}}
