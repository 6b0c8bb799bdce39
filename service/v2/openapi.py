"""The OpenAPI description of the v2 routes: request bodies, answers and errors, written out
because the routes read their bodies themselves (`service.v2.tensors`) and return plain dicts.

Every 4xx of a v2 route is the protocol's `{"error": "<message>"}`; `service.v2.errors.V2Route`
documents that for each route as a `4XX` answer, and the routes list their other statuses.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from service.schemas import TROUSER_PIXELS, TROUSER_PNG_B64
from service.v2.tensors import DTYPES


class V2Error(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"error": "model 'resnet' is not loaded"}]}
    )
    error: str


_ERRORS: dict[int | str, str] = {
    "4XX": "The request cannot be served as sent (400: bad body, tensor or parameter; 404: "
    "no such model or version; 405: method not allowed; 413: too large)",
    503: "Not ready (models loading, or shutting down) or overloaded (Retry-After)",
    504: "Not answered within the deadline, FMNIST_REQUEST_DEADLINE_S (Retry-After)",
}


def v2_error_responses(*statuses: int | str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries in the v2 error shape."""
    return {status: {"model": V2Error, "description": _ERRORS[status]} for status in statuses}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
    }


_STRING = {"type": "string"}
_STRINGS = {"type": "array", "items": _STRING}
_PARAMETERS = {"type": "object", "description": "free-form parameters"}
_DATATYPE = {"type": "string", "enum": list(DTYPES)}
_SHAPE = {"type": "array", "items": {"type": "integer", "minimum": -1}}
_TENSOR_METADATA = _object({"name": _STRING, "datatype": _DATATYPE, "shape": _SHAPE})

SERVER_METADATA = _json(
    _object({"name": _STRING, "version": _STRING, "extensions": _STRINGS}),
    "The server's name, version and protocol extensions",
)
LIVE = _json(_object({"live": {"type": "boolean"}}), "The process answers")
READY = _json(_object({"ready": {"type": "boolean"}}), "Whether every model is loaded and warmed")
NOT_READY = _json(
    _object({"ready": {"const": False}}), "Not ready: models loading, or shutting down"
)
MODEL_METADATA = _json(
    _object(
        {
            "name": _STRING,
            "versions": _STRINGS,
            "platform": _STRING,
            "inputs": {"type": "array", "items": _TENSOR_METADATA},
            "outputs": {"type": "array", "items": _TENSOR_METADATA},
        },
        {"parameters": _PARAMETERS},
    ),
    "The model's versions (the loaded one), its input and output tensors",
)
MODEL_READY = _json(
    _object({"name": _STRING, "ready": {"type": "boolean"}}), "The model is loaded and ready"
)

# Inference. The JSON body names one input tensor of the model; its data is in the JSON or, with
# Triton's binary extension, in raw bytes after it. Which inputs a model takes and what shape
# they need is in its metadata (GET /v2/models/{name}); a tensor that does not fit is a 400.
_INPUT = _object(
    {
        "name": _STRING,
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": _DATATYPE,
    },
    {
        "data": {
            "description": "the elements, row-major (flat or nested); BYTES as strings "
            "(image files base64-encoded). Absent when parameters.binary_data_size says where "
            "the bytes are"
        },
        "parameters": {
            "type": "object",
            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
        },
    },
)
_REQUESTED_OUTPUT = _object(
    {"name": _STRING},
    {
        "parameters": {
            "type": "object",
            "properties": {"binary_data": {"type": "boolean"}},
        }
    },
)
_TROUSER_FP32 = [[round(v / 255, 4) for v in row] for row in TROUSER_PIXELS]
INFER_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "A JSON inference request; with Triton's binary tensor extension, raw tensor "
    "bytes follow the JSON and the Inference-Header-Content-Length header gives the JSON's "
    "length. Image models take one input: `images` (FP32 pixels in [0, 1], N x 1 x 28 x 28 or "
    "N x 28 x 28) or `image_files` (BYTES, N encoded image files); `<model>-decoder` takes "
    "`latent` (FP32, N x latent size).",
    "content": {
        "application/json": {
            "schema": _object(
                {"inputs": {"type": "array", "items": _INPUT, "minItems": 1}},
                {
                    "id": {"type": ["string", "null"], "description": "echoed in the answer"},
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "binary_data_output": {"type": "boolean"},
                            "invert": {
                                "description": "invert the images: auto (when the background is "
                                "light), true or false",
                                "anyOf": [
                                    {"type": "string", "enum": ["auto", "true", "false"]},
                                    {"type": "boolean"},
                                ],
                            },
                        },
                    },
                    "outputs": {"type": "array", "items": _REQUESTED_OUTPUT},
                },
            ),
            "examples": {
                "image_files": {
                    "summary": "one PNG file (a pair of trousers), base64 in JSON",
                    "value": {
                        "inputs": [
                            {
                                "name": "image_files",
                                "shape": [1],
                                "datatype": "BYTES",
                                "data": [TROUSER_PNG_B64],
                            }
                        ]
                    },
                },
                "images": {
                    "summary": "FP32 pixels in [0, 1], N x 28 x 28 (the same trousers)",
                    "value": {
                        "id": "trousers-1",
                        "inputs": [
                            {
                                "name": "images",
                                "shape": [1, 28, 28],
                                "datatype": "FP32",
                                "data": [
                                    [round(v / 255, 4) for v in row] for row in TROUSER_PIXELS
                                ],
                            }
                        ],
                        "outputs": [{"name": "label"}],
                    },
                },
            },
        }
    },
}
_OUTPUT = _object(
    {"name": _STRING, "datatype": _DATATYPE, "shape": _SHAPE},
    {
        "data": {"type": "array", "description": "the elements, flat, row-major"},
        "parameters": {
            "type": "object",
            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
        },
    },
)
INFER_RESPONSE = {
    "description": "The outputs asked for (every output when none is named). JSON, or with "
    "binary outputs the JSON followed by their bytes (application/octet-stream, JSON length in "
    "Inference-Header-Content-Length)",
    "content": {
        "application/json": {
            "schema": _object(
                {
                    "model_name": _STRING,
                    "model_version": _STRING,
                    "outputs": {"type": "array", "items": _OUTPUT},
                },
                {"id": _STRING},
            )
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}

_OPTIONAL_JSON = {
    "required": False,
    "description": "An optional JSON object (an empty body is `{}`)",
}
INDEX_REQUEST_BODY = {
    **_OPTIONAL_JSON,
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
            "example": {"ready": True},
        }
    },
}
LOAD_REQUEST_BODY = {
    **_OPTIONAL_JSON,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "parameters": {
                        "type": "object",
                        "maxProperties": 0,
                        "description": "none taken: a load reads the checkpoint folder",
                    }
                },
            },
            "example": {},
        }
    },
}
UNLOAD_REQUEST_BODY = {
    **_OPTIONAL_JSON,
    "content": {"application/json": {"schema": {"type": "object"}, "example": {}}},
}
_STATE = {"type": "string", "enum": ["READY", "UNAVAILABLE"]}
INDEX = _json(
    {
        "type": "array",
        "items": _object(
            {"name": _STRING, "state": _STATE, "reason": _STRING}, {"version": _STRING}
        ),
    },
    "Every model of the repository: READY with its version, or UNAVAILABLE",
)
LOADED = _json(
    _object({"name": _STRING, "load": {"const": True}, "version": _STRING}),
    "Loaded, verified, warmed and serving",
)
UNLOADED = _json(_object({"name": _STRING, "unload": {"const": True}}), "No longer served")
