"""Refuses work the worker cannot start soon, before reading its body.

Past its capacity a server that accepts everything only lengthens every queue: each request waits
behind all the others, and every answer comes late. `ConcurrencyLimit` lets at most
`max_in_flight` POST requests (the ones that carry work) be in progress in this worker; the next
is answered 503 with Retry-After at once, before its body is read, which costs a fraction of
serving it. Health, readiness and metrics probes (GET, HEAD) are never refused.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import Overloaded, error_response


class ConcurrencyLimit:
    def __init__(self, app: ASGIApp, max_in_flight: int) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        if self.in_flight >= self.max_in_flight:
            error = Overloaded(
                f"this worker is serving {self.in_flight} requests, its limit; retry later"
            )
            return await error_response(error, scope["path"])(scope, receive, send)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
