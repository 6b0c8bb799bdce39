"""What routes share: the runtime, the API-key check, and the common query parameters."""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request, Response, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

import ml
from service.errors import NotAcceptable, Unauthorized, error_responses
from service.imaging import InvertMode
from service.runtime import Runtime
from service.schemas import PNG_RESPONSE

_bearer = HTTPBearer(auto_error=False, description="the API key as a bearer token")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")


# The dependencies are `async def` although they never await: FastAPI runs a plain `def`
# dependency in a worker thread, and two thread hops per request cost more than the checks.
async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def require_api_key(
    runtime: RuntimeDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header_key: Annotated[str | None, Security(_api_key_header)],
) -> None:
    """The request must carry FMNIST_API_KEY (compared in constant time). The app attaches this
    check to the model routes only when a key is set."""
    expected = runtime.settings.api_key
    assert expected is not None  # noqa: S101  narrows the type: attached only with a key
    check_api_key(bearer.credentials if bearer else header_key, expected)


def check_api_key(supplied: str | None, expected: SecretStr) -> None:
    """`Unauthorized` unless `supplied` is the key (compared in constant time): the check of
    both protocols, which take the key the same two ways."""
    if not supplied:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>` or `X-API-Key`")
    # Header values arrive decoded as latin-1: encoding them back gives the bytes the client
    # sent, which match a UTF-8 key that has non-ASCII characters.
    if not hmac.compare_digest(supplied.encode("latin-1"), expected.get_secret_value().encode()):
        raise Unauthorized("invalid API key")


InvertQuery = Annotated[
    InvertMode,
    Query(
        description="invert the image: auto (when its background is light), true or false",
    ),
]
FormatQuery = Annotated[
    Literal["json", "png"] | None,
    Query(alias="format", description="response format; overrides the Accept header"),
]
CalibratedQuery = Annotated[
    bool,
    Query(
        description="calibrated probabilities (the model's logits divided by the temperature "
        "fitted on validation data); false gives the plain softmax",
    ),
]
OodQuery = Annotated[
    Literal["flag", "refuse"],
    Query(
        description="images unlike the training data: flag them in the answer, or refuse the "
        "request (422, naming them)",
    ),
]
ScaleQuery = Annotated[int, Query(ge=1, le=16, description="PNG upscaling factor (nearest)")]


def wants_png(request: Request, output_format: str | None) -> bool:
    """`?format=` if given, else whichever of JSON and PNG the Accept header prefers (JSON on
    a tie or without a header). Each type takes the quality of the most specific range that
    matches it (RFC 9110: `application/json;q=0.1, */*` prefers PNG); `NotAcceptable` when the
    header gives both a quality of 0."""
    if output_format is not None:
        return output_format == "png"
    header = request.headers.get("accept", "").strip()
    if not header:
        return False
    quality = {"application/json": _quality(header, "application/json")}
    quality["image/png"] = _quality(header, "image/png")
    if quality["image/png"] == quality["application/json"] == 0:
        raise NotAcceptable(
            f"the Accept header ({header[:100]}) allows neither application/json nor image/png"
        )
    return quality["image/png"] > quality["application/json"]


def _quality(header: str, media_type: str) -> float:
    """The q of the most specific range in `header` that matches `media_type` (0 if none)."""
    kind = media_type.split("/")[0] + "/*"
    best_specificity, best_q = -1, 0.0
    for part in header.split(","):
        media, *params = (piece.strip().lower() for piece in part.split(";"))
        specificity = {media_type: 2, kind: 1, "*/*": 0}.get(media, -1)
        if specificity <= best_specificity:
            continue
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = min(max(float(param[2:]), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        best_specificity, best_q = specificity, q
    return best_q


def png_response(png: bytes) -> Response:
    return Response(png, media_type="image/png")


def image_route_responses(png_description: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses of a route that takes images: JSON or PNG, and every error it can give."""
    return {
        200: {"description": f"JSON as below, or PNG: {png_description}", **PNG_RESPONSE},
        **error_responses(400, 401, 406, 408, 413, 415, 422, 503, 504),
    }


def model_query(default: str, kind: str | None = None) -> Any:
    """The `model` parameter: the registered models (of `kind`, when given) are its documented
    values; one that is not loaded is answered 422 (unknown_model) by the route."""
    names = [name for name, spec in ml.MODELS.items() if kind in (None, spec.kind)]
    return Query(
        description=f"which loaded model: {' or '.join(names)}",
        examples=[default],
        json_schema_extra={"enum": names},
    )
