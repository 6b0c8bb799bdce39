"""The one place where the service's typed errors become gRPC status codes.

The codes follow what the REST statuses mean: a request to change is INVALID_ARGUMENT, a size
limit RESOURCE_EXHAUSTED (what gRPC itself answers a message over its size limit), not ready,
draining or overloaded UNAVAILABLE (which gRPC clients may retry, as they would a 503). The
error's headers (Retry-After, WWW-Authenticate) travel as trailing metadata.
"""

from __future__ import annotations

import grpc

from service.errors import ServiceError

CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def code_of(error: ServiceError) -> grpc.StatusCode:
    """The status code of `error`: by its HTTP status; INTERNAL for any other."""
    return CODES.get(error.status, grpc.StatusCode.INTERNAL)


def trailers_of(error: ServiceError) -> tuple[tuple[str, str], ...]:
    """The error's headers as trailing metadata (gRPC keys are lower case)."""
    return tuple((key.lower(), value) for key, value in (error.headers or {}).items())
