"""Pure-ASGI middleware for what every request shares: the response headers (instance, request
id, nosniff), request metrics and the upload-size limit. (Pure ASGI rather than
BaseHTTPMiddleware: cheaper per request.)"""

from __future__ import annotations

import asyncio
import itertools
import os
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLarge, RequestTimeout
from service.logs import REQUEST_ID
from service.metrics import Metrics

NOSNIFF = (b"x-content-type-options", b"nosniff")


MAX_REQUEST_ID = 128  # characters of a client's X-Request-Id that are taken as they are


def accepted_request_id(value: bytes | None) -> str | None:
    """A client's X-Request-Id when it is 1-128 visible ASCII characters (no spaces or control
    characters, so it cannot break a log line or a header), else None."""
    if value and len(value) <= MAX_REQUEST_ID and all(0x21 <= byte <= 0x7E for byte in value):
        return value.decode("ascii")
    return None


_ID_PREFIX = os.urandom(8).hex()  # this process's; new ones count on from it
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    """Unique across processes and restarts (a random 64-bit prefix per process) without a
    system call per request: `uuid4` reads the OS's random source each time, and that call
    gives up the GIL, which the event loop then waits to get back from the decode thread."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


class ResponseHeaders:
    """Headers on every response:

    - `X-Instance-Id`, so a client behind a load balancer sees which replica answered;
    - `X-Request-Id`: the client's own when it sends an acceptable one (`accepted_request_id`),
      else a new one; it is also set in `service.logs.REQUEST_ID` for log lines to name;
    - `X-Content-Type-Options: nosniff`, so a browser never treats a response as another type
      than the one declared (an uploaded image echoed back, say, run as a script).

    The handler of unexpected errors answers outside the app's middleware and adds the same
    headers itself (`service.errors`)."""

    def __init__(self, app: ASGIApp, instance_id: str) -> None:
        self.app = app
        self.fixed = [(b"x-instance-id", instance_id.encode("latin-1")), NOSNIFF]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        sent = next((value for name, value in scope["headers"] if name == b"x-request-id"), None)
        request_id = accepted_request_id(sent) or new_request_id()
        # Not reset afterwards: the handler of unexpected errors reads it after the exception
        # has left this middleware, and the request's task (and with it the context) ends there.
        REQUEST_ID.set(request_id)
        headers = [*self.fixed, (b"x-request-id", request_id.encode("ascii"))]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestMetrics:
    """Counts and times every request by method, route template (not raw path) and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe_request(
                scope["method"], route, status, time.perf_counter() - started
            )


class BodyLimits:
    """Bounds what reading a body can cost: its size and how long it may stall.

    Bodies over `max_bytes` are refused while they stream in: a declared Content-Length over
    the limit fails on the first read, before any body byte is read; otherwise bytes are counted
    as they arrive and reading stops at the first chunk past the limit (413). A client that sends
    nothing for `idle_s` while its body is read gets 408 and its connection is closed, so a
    stalled upload holds its connection for that long at most after its last byte. The errors
    are raised from inside the body read, so whoever reads it answers them: the app's error
    handlers, or `service.admission.ConcurrencyLimit`, which reads bodies before admitting
    them."""

    def __init__(self, app: ASGIApp, max_bytes: int, idle_s: float | None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.idle_s = idle_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = next((v for name, v in scope["headers"] if name == b"content-length"), b"")
        too_long = declared.isdigit() and int(declared) > self.max_bytes
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if too_long:
                raise PayloadTooLarge(
                    f"request body of {int(declared)} bytes exceeds {self.max_bytes} bytes"
                )
            try:
                async with asyncio.timeout(self.idle_s):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"no part of the request body arrived for {self.idle_s:g} s; the "
                    "connection is closed"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(f"request body exceeds {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)
