"""Response models (what each endpoint returns as JSON) and the OpenAPI request-body schemas.

The client distribution ships this file too (client/fmnist_client/schemas.py links to it), so it
imports nothing but pydantic; tests/service/test_fuzz.py checks its constants against the
service's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

IMAGE_SIZE = 28  # ml.IMAGE_SIZE
MAX_IMAGES = 256  # the default of FMNIST_MAX_IMAGES_PER_REQUEST

# Real images for the documented examples, so that each example request works as written: 28x28
# grayscale PNGs of a pair of trousers and of a bag, light on dark as in Fashion-MNIST (the
# models classify them as such). `TROUSER_PNG_B64` is `TROUSER_PIXELS` saved by Pillow
# (`Image.fromarray(np.uint8(TROUSER_PIXELS)).save(buffer, "PNG", optimize=True)`); the bag, saved
# the same way, is a block 20 wide and 15 high with a handle on top. Both are checked by
# tests/service/test_fuzz.py: the pixels they decode to, and the class the service gives them.
TROUSER_PIXELS = [
    [
        200 if 3 <= y < 25 and 8 <= x < 20 and not (y >= 10 and 13 <= x < 15) else 0
        for x in range(IMAGE_SIZE)
    ]
    for y in range(IMAGE_SIZE)
]
TROUSER_PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAJElEQVR42mNgoAlghDFOIAlaQGkmfDoHuaSFxVBy7QiV"
    "pBEAAPAyAZy/SQN3AAAAAElFTkSuQmCC"
)
BAG_PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAMElEQVR42mNgoD9ghLNOwFkWMAYTPp0sSGwLNBPw6yRf"
    "khHNGhQH0MjOUUmKJGkEAGArAysEP90WAAAAAElFTkSuQmCC"
)


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
    ood_score: float = Field(
        description="how unlike the training images the image is: the squared Mahalanobis "
        "distance of its features to the nearest class (higher is more unusual)"
    )
    out_of_distribution: bool = Field(
        description="ood_score is above the threshold: probably not a Fashion-MNIST garment, "
        "whatever its label says"
    )


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
                    "ood_score": 98.2,
                    "out_of_distribution": False,
                }
            ],
            "calibrated": True,
            "ood_threshold": 327.1,
            "ood_flag_rate": 0.05,
        }
    )
    model: str
    class_names: list[str] = Field(description="class names indexed by class_id")
    calibrated: bool = Field(description="whether the probabilities are calibrated")
    ood_threshold: float = Field(description="the ood_score above which an image is flagged")
    ood_flag_rate: float = Field(
        description="the share of in-distribution (validation) images flagged at that threshold"
    )
    predictions: list[Prediction] = Field(description="one per input image, in order")


class Embedding(BaseModel):
    vector: list[float]
    coordinates: list[float] = Field(description="[x, y] on the training-set PCA map")
    ood_score: float | None = Field(
        None, description="classifiers: as in /classify (null for the autoencoder)"
    )
    out_of_distribution: bool | None = Field(
        None, description="classifiers: as in /classify (null for the autoencoder)"
    )


class EmbedResponse(BaseModel):
    model_config = _example(
        {
            "model": "mynet",
            "layer": "penultimate",
            "dimension": 128,
            "explained_variance_ratio": [0.31, 0.18],
            # A vector has `dimension` numbers; three of them here.
            "embeddings": [
                {
                    "vector": [0.0, 1.73, 0.41],
                    "coordinates": [4.2, -1.3],
                    "ood_score": 98.2,
                    "out_of_distribution": False,
                }
            ],
        }
    )
    model: str
    layer: str
    dimension: int = Field(description="length of each vector")
    explained_variance_ratio: list[float] = Field(description="of the map's two axes")
    embeddings: list[Embedding] = Field(description="one per input image, in order")


AttributionRow = Annotated[list[float], Field(min_length=IMAGE_SIZE, max_length=IMAGE_SIZE)]


class Explanation(BaseModel):
    class_id: int = Field(description="the class explained: `target`, else the most probable")
    label: str
    probability: float = Field(description="the model's probability of that class")
    attribution: list[AttributionRow] = Field(
        min_length=IMAGE_SIZE,
        max_length=IMAGE_SIZE,
        description="28 rows of 28, one value per input pixel (rounded to 6 decimals): how much "
        "that probability drops when a patch covering the pixel is hidden, averaged over those "
        "patches. Positive pixels support the class, negative ones count against it.",
    )
    scale: float = Field(
        description="the largest absolute attribution, the end of the PNG's colour scale: the "
        "most probability one patch holds (0 when hiding any patch changes nothing)"
    )


class ExplainResponse(BaseModel):
    model_config = _example(
        {
            "model": "mynet",
            "method": "occlusion",
            "patch": 5,
            "stride": 4,
            "baseline": 0.0,
            "passes": 50,
            "explanations": [
                {
                    "class_id": 1,
                    "label": "Trouser",
                    "probability": 0.991,
                    # An illustrative map: the real one varies across the garment.
                    "attribution": [[0.02 if v else 0.0 for v in row] for row in TROUSER_PIXELS],
                    "scale": 0.02,
                }
            ],
        }
    )
    model: str
    method: Literal["occlusion"] = Field(
        description="square patches set to the background in turn; a pixel's attribution is "
        "the drop in the class's probability, averaged over the patches covering it"
    )
    patch: int = Field(description="side of the square patches, in pixels")
    stride: int = Field(
        description="pixels between patch positions (the last of each row and column is moved "
        "to touch the edge)"
    )
    baseline: float = Field(description="the value hidden pixels take: the background, 0")
    passes: int = Field(
        description="forward passes per image: the whole image, then one per patch position"
    )
    explanations: list[Explanation] = Field(description="one per input image, in order")


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
                    "png": TROUSER_PNG_B64,
                    "pixels": TROUSER_PIXELS,
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
            "steps": 2,
            "frames": [TROUSER_PNG_B64, BAG_PNG_B64],
            # A latent vector has latent_dim numbers; three of them here.
            "latents": [[0.1, -0.5, 1.2], [0.4, 0.2, -0.3]],
        }
    )
    model: str
    method: Literal["linear", "slerp"]
    steps: int
    frames: list[str] = Field(description="28x28 base64 PNGs, start first, end last")
    latents: list[list[float]] = Field(description="the latent vector of each frame")


class GenerateResponse(BaseModel):
    model_config = _example({"model": "vae", "seed": 7, "images": [BAG_PNG_B64]})
    model: str
    seed: int = Field(description="the seed used; send it again for the same images")
    images: list[str] = Field(description="28x28 base64 PNGs")


class TrustInfo(BaseModel):
    """A classifier's calibration and out-of-distribution flag, as loaded."""

    temperature: float = Field(description="the logits are divided by it before the softmax")
    test_ece: float = Field(description="expected calibration error on the test set (15 bins)")
    test_ece_uncalibrated: float = Field(description="the same without the temperature")
    ood_method: str = Field(description="how ood_score is computed")
    ood_threshold: float = Field(description="ood_score above which an image is flagged")
    ood_flag_rate: float = Field(description="share of validation images flagged")


class ModelInfo(BaseModel):
    # The autoencoder: every field has a value (the OpenAPI document leaves nulls out of examples).
    model_config = _example(
        {
            "name": "vae",
            "kind": "autoencoder",
            "description": "convolutional VAE, 3 conv + FC encoder, FC + 3 transposed-conv decoder",
            "parameters": 822785,
            "backend": "onnxruntime",
            "device": "cpu",
            "sha256": "e34291f4b2f0acced19167e56ca75f068bd89c13316e262c2d6b99c5404f8d6c",
            "version": "e34291f4b2f0",
            "trained_at": "2026-11-28T09:41:07Z",
            "test_metrics": {"loss": 237.34, "bce": 220.145, "kl": 17.196, "bce_floor": 189.858},
            "layers": ["latent"],
            "class_names": [],
            "latent_dim": 32,
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
    trust: TrustInfo | None = Field(
        None, description="a classifier's calibration and OOD flag; null for the autoencoder"
    )


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
# OpenAPI description is written out here rather than derived from a parameter. It describes what
# the service accepts as closely as JSON Schema can: what it cannot say (that a binary field must
# hold a readable image, that the decoded images must fit the size limits) is in the descriptions
# and answered by a 400 or 413.
IMAGE_MEDIA_TYPES = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/bmp",
    "image/tiff",
    "image/webp",
    "image/x-portable-anymap",
)
_IMAGE_FILE_TEXT = (
    "an image file: PNG, JPEG, GIF, BMP, TIFF, WebP or PNM (read by its content, whatever the "
    "declared type), at most FMNIST_MAX_IMAGE_PIXELS pixels"
)
_BINARY = {"type": "string", "format": "binary"}
_IMAGE_FILE = {**_BINARY, "contentMediaType": "image/*", "description": _IMAGE_FILE_TEXT}
_BASE64_IMAGE = {
    "type": "string",
    "format": "byte",
    "contentEncoding": "base64",
    "contentMediaType": "image/*",
    "description": f"{_IMAGE_FILE_TEXT}, base64-encoded (line breaks and a data: URL prefix "
    "are allowed)",
}


def _grid(cell: dict[str, Any]) -> dict[str, Any]:
    row = {"type": "array", "items": cell, "minItems": IMAGE_SIZE, "maxItems": IMAGE_SIZE}
    return {"type": "array", "items": row, "minItems": IMAGE_SIZE, "maxItems": IMAGE_SIZE}


_PIXELS = {
    "description": "one image, light garment on dark: 28 rows of 28 ints 0-255, or of numbers 0-1",
    "anyOf": [
        _grid({"type": "integer", "minimum": 0, "maximum": 255}),
        _grid({"type": "number", "minimum": 0, "maximum": 1}),
    ],
}
_IMAGE_OR_PIXELS = {"oneOf": [_BASE64_IMAGE, _PIXELS]}
_RAW_IMAGE = {"schema": _IMAGE_FILE}


def _images(items: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "type": "array",
        "items": items,
        "minItems": 1,
        "maxItems": MAX_IMAGES,
        "description": f"{description}; at most FMNIST_MAX_IMAGES_PER_REQUEST ({MAX_IMAGES} by "
        "default)",
    }


IMAGES_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "One or more images, in any one style: multipart `file` fields, one raw "
    "image file, or JSON. Images are converted to grayscale, fitted into 28x28 and inverted "
    "when their background is light (`invert`).",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": _images(_IMAGE_FILE, "file parts (with a filename or an image type)")
                },
                "required": ["file"],
            },
            "encoding": {"file": {"contentType": ", ".join(IMAGE_MEDIA_TYPES)}},
        },
        "image/png": _RAW_IMAGE,
        "image/jpeg": _RAW_IMAGE,
        "image/*": _RAW_IMAGE,
        "application/octet-stream": _RAW_IMAGE,
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "images": _images(_BASE64_IMAGE, "base64 image files"),
                    "pixels": {
                        "description": "pixel arrays: a list of images, or one image",
                        "oneOf": [_images(_PIXELS, "images"), _PIXELS],
                    },
                },
                "oneOf": [{"required": ["images"]}, {"required": ["pixels"]}],
                "description": "exactly one of images (base64 files) or pixels",
            },
            "examples": {
                "base64": {
                    "summary": "a base64 PNG (a pair of trousers)",
                    "value": {"images": [TROUSER_PNG_B64]},
                },
                "pixels": {
                    "summary": "28x28 pixels, ints 0-255 (the same trousers)",
                    "value": {"pixels": [TROUSER_PIXELS]},
                },
            },
        },
    },
}

PAIR_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "The two images to interpolate between: two multipart file fields, or JSON "
    "with a base64 image file or a 28x28 pixel array for each.",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"start": _IMAGE_FILE, "end": _IMAGE_FILE},
                "required": ["start", "end"],
            },
            "encoding": {
                name: {"contentType": ", ".join(IMAGE_MEDIA_TYPES)} for name in ("start", "end")
            },
        },
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"start": _IMAGE_OR_PIXELS, "end": _IMAGE_OR_PIXELS},
                "required": ["start", "end"],
            },
            "examples": {
                "base64": {
                    "summary": "trousers to a bag, base64 PNGs",
                    "value": {"start": TROUSER_PNG_B64, "end": BAG_PNG_B64},
                },
                "pixels": {
                    "summary": "trousers as pixels to a bag as a base64 PNG",
                    "value": {"start": TROUSER_PIXELS, "end": BAG_PNG_B64},
                },
            },
        },
    },
}

PNG_RESPONSE = {"content": {"image/png": {"schema": _BINARY}}}
