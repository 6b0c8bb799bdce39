"""Refuses work the worker cannot start soon, and counts only requests that have work to start.

Past its capacity a server that accepts everything only lengthens every queue: each request waits
behind all the others, and every answer comes late. `ConcurrencyLimit` lets at most
`max_in_flight` POST requests (the ones that carry work) be in progress in this worker; the next
is answered 503 with Retry-After. Health, readiness and metrics probes (GET, HEAD) are never
refused.

A request takes its place only once its whole body has arrived: the body is read first (through
`service.middleware.BodyLimits`, which bounds its size and how long it may stall) and handed to
the app as it came. Clients that stall in the middle of an upload then hold a connection each,
not a place that a client with a whole request is refused for. When the places are already all
taken as a request arrives, it is refused at once, before its body is read, which costs a
fraction of serving it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import Overloaded, ServiceError, error_response


class ConcurrencyLimit:
    def __init__(self, app: ASGIApp, max_in_flight: int) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        if self.in_flight >= self.max_in_flight:
            return await self._refuse(scope, receive, send)
        try:
            messages = await _read_body(receive)
        except ServiceError as error:  # too large, or stalled
            return await error_response(error, scope["path"])(scope, receive, send)
        if messages[-1]["type"] == "http.disconnect":  # gone: the app sees it and gives up
            return await self.app(scope, _replay(messages, receive), send)
        if self.in_flight >= self.max_in_flight:
            return await self._refuse(scope, receive, send)
        self.in_flight += 1
        try:
            await self.app(scope, _replay(messages, receive), send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = Overloaded(
            f"this worker is serving {self.in_flight} requests, its limit; retry later"
        )
        await error_response(error, scope["path"])(scope, receive, send)


async def _read_body(receive: Receive) -> list[Message]:
    """The request's messages up to its last body chunk, or up to a disconnect."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that gives `messages` first, then whatever comes after them (a disconnect)."""
    pending = iter(messages)

    async def replayed() -> Message:
        return next(pending, None) or await receive()

    return replayed
