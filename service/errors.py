"""Typed errors and the one place that turns them, and every other failure, into responses.

Every error leaves the service as `{"error": {"code": ..., "message": ...}}` with a fitting
status; route code raises `ServiceError` subclasses and never builds error responses itself.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from service.logs import REQUEST_ID
from service.schemas import ErrorResponse

log = logging.getLogger(__name__)
V2_PREFIX = "/v2"  # the Open Inference Protocol's routes, which answer errors in its own shape


class ServiceError(Exception):
    """An error a client can act on; `status` and `code` are fixed per subclass."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    headers: dict[str, str] | None = None

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class InvalidImage(ServiceError):
    status, code = 400, "invalid_image"


class InvalidPixels(ServiceError):
    status, code = 400, "invalid_pixels"


class InvalidJSON(ServiceError):
    status, code = 400, "invalid_json"


class NoImages(ServiceError):
    status, code = 400, "no_images"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class NotFound(ServiceError):
    status, code = 404, "not_found"


class MethodNotAllowed(ServiceError):
    status, code = 405, "method_not_allowed"


class NotAcceptable(ServiceError):
    status, code = 406, "not_acceptable"


class RequestTimeout(ServiceError):
    """The client stopped sending its request (FMNIST_BODY_TIMEOUT_S between body chunks); the
    connection is closed after the answer, as what is left of the body will not come."""

    status, code = 408, "request_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Connection": "close"})


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class ImageTooLarge(ServiceError):
    status, code = 413, "image_too_large"


class TooManyImages(ServiceError):
    status, code = 413, "too_many_images"


class UnsupportedMediaType(ServiceError):
    status, code = 415, "unsupported_media_type"


class InvalidParameter(ServiceError):
    status, code = 422, "invalid_parameter"


class OutOfDistribution(ServiceError):
    """Images flagged as unlike the training data, where the caller asked for them refused."""

    status, code = 422, "out_of_distribution"


class UnknownModel(ServiceError):
    status, code = 422, "unknown_model"


class ModelLoadFailed(ServiceError):
    """A repository load refused (missing or altered checkpoint); the old model still serves."""

    status, code = 400, "load_failed"


class NotReady(ServiceError):
    """Models not loaded yet, or the process is draining: another replica, or this one in a
    moment, can answer."""

    status, code = 503, "not_ready"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class NotAlive(ServiceError):
    status, code = 503, "not_alive"


class Overloaded(ServiceError):
    status, code = 503, "overloaded"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class DeadlineExceeded(ServiceError):
    """The request's work outlived the service's deadline (FMNIST_REQUEST_DEADLINE_S)."""

    status, code = 504, "deadline_exceeded"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def is_v2_path(path: str) -> bool:
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def error_response(error: ServiceError, path: str = "") -> JSONResponse:
    """The answer to `error`: the service's error body; for a request `path` under /v2 the
    protocol's `{"error": "<message>"}`, a parameter error there being a 400 as its clients
    expect (what `service.v2.errors.V2Route` answers inside the v2 routes)."""
    if is_v2_path(path):
        status = 400 if error.status == 422 else error.status
        return JSONResponse({"error": error.message}, status, error.headers)
    return JSONResponse(error_body(error.code, error.message), error.status, error.headers)


def validation_message(exc: RequestValidationError) -> str:
    parts = []
    for problem in exc.errors():
        where = ".".join(str(part) for part in problem.get("loc", ()))
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


# Starlette calls each handler only with the exception type it is registered for (see
# `install_error_handlers`), so the casts below state what is known, not a guess.


async def _on_service_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(cast(ServiceError, exc), request.url.path)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(InvalidParameter(validation_message(cast(RequestValidationError, exc))))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own 404 / 405 (no such route, wrong method), in our shape; under /v2 in the
    protocol's (most such requests reach the v2 routes' own fallback; these are the ones it
    cannot match, e.g. a path with a line break, or `PUT /v2`)."""
    exc = cast(StarletteHTTPException, exc)
    path = request.url.path
    if exc.status_code == 404:
        error: ServiceError = NotFound(f"no route {path}; see /docs")
    elif exc.status_code == 405:
        error = MethodNotAllowed(
            f"{request.method} is not allowed on {path}", headers=dict(exc.headers or {})
        )
    else:
        return JSONResponse(error_body("http_error", str(exc.detail)), exc.status_code, exc.headers)
    return error_response(error, path)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A bug or an outage: logged with its traceback and the request id, which the answer also
    carries (header and message), so a report quoting it leads to the log line."""
    request_id = REQUEST_ID.get() or "-"
    log.exception(
        "unhandled error on %s %s (request id %s)", request.method, request.url.path, request_id
    )
    message = f"internal error; the request was not completed (request id {request_id})"
    response = error_response(ServiceError(message))
    # This handler runs outside the app's middleware, so it adds the headers it would add.
    response.headers["X-Instance-Id"] = request.app.state.settings.instance_id
    response.headers["X-Request-Id"] = request_id
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that went away; never sent to one


async def _on_client_disconnect(request: Request, exc: Exception) -> Response:
    """The client went away while its request was being read: nothing failed on this side, so
    no error log and no 5xx in the metrics (a false alert); the status recorded is 499."""
    log.info("client disconnected during %s %s", request.method, request.url.path)
    return Response(status_code=CLIENT_CLOSED_REQUEST)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ClientDisconnect, _on_client_disconnect)
    app.add_exception_handler(ServiceError, _on_service_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)


# OpenAPI: one documented example per status, so every route can list its error responses.
_EXAMPLES: dict[int, tuple[str, type[ServiceError], str]] = {
    400: ("Bad image or body", InvalidImage, "file 1: not an image Pillow can read"),
    401: ("API key missing or wrong", Unauthorized, "missing or invalid API key"),
    404: ("Not found", NotFound, "model 'resnet' is not loaded; loaded: lenet, mynet, vae"),
    406: (
        "Neither JSON nor PNG is acceptable",
        NotAcceptable,
        "the Accept header allows neither application/json nor image/png",
    ),
    408: (
        "The body stopped arriving",
        RequestTimeout,
        "no part of the request body arrived for 10 s; the connection is closed",
    ),
    413: ("Too large", PayloadTooLarge, "request body exceeds 10485760 bytes"),
    415: ("Unsupported content type", UnsupportedMediaType, "unsupported content type text/plain"),
    422: (
        "Bad parameter",
        InvalidParameter,
        "query.top_k: Input should be less than or equal to 10",
    ),
    503: ("Not ready or overloaded", Overloaded, "queue for mynet/classify is full; retry later"),
    504: (
        "Not answered within the deadline",
        DeadlineExceeded,
        "no answer within the 30 s deadline",
    ),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given statuses, in the shared error shape."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, error_type, message = _EXAMPLES[status]
        responses[status] = {
            "model": ErrorResponse,
            "description": description,
            "content": {"application/json": {"example": error_body(error_type.code, message)}},
        }
    return responses
