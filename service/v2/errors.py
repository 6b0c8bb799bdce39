"""The v2 protocol's error shape, `{"error": "<message>"}`, for the v2 routes only.

The v2 routers use `V2Route`, which answers the service's typed errors (and request validation
errors) itself, before the app's handlers would give them the service's own error shape.
Parameter errors, 422 elsewhere in the service, are 400 here as the protocol's clients expect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from service.errors import ServiceError, validation_message
from service.v2.openapi import v2_error_responses


def v2_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, 400 if status == 422 else status, headers)


class V2Route(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        # Every client error of a v2 route has the protocol's shape: documented once, as 4XX
        # (which also keeps FastAPI from documenting a 422 these routes never send).
        responses = {**v2_error_responses("4XX"), **(kwargs.pop("responses", None) or {})}
        super().__init__(path, endpoint, responses=responses, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as exc:
                return v2_error(exc.status, exc.message, exc.headers)
            except RequestValidationError as exc:
                return v2_error(400, validation_message(exc))

        return handle
