"""Ends a request's work when nobody will read the answer: its client went away, or its
deadline passed.

uvicorn does not cancel a handler whose client disconnected, so the images of a client that gave
up would still be decoded and run. Once the app has read the whole body, `RequestLifetime`
listens for the disconnect and cancels the handler: its images leave the batcher's queue before
any inference, and the request is counted with status 499. A handler still working when the
deadline passes is cancelled the same way and answered 504 with Retry-After. Both only apply
until the response starts; after that there is nothing left to save. A handler the server
itself cancels (its drain time is up) is answered 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import CLIENT_CLOSED_REQUEST, DeadlineExceeded, NotReady, error_response

log = logging.getLogger(__name__)


class RequestLifetime:
    def __init__(self, app: ASGIApp, deadline_s: float | None) -> None:
        self.app = app
        self.deadline_s = deadline_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        handler = asyncio.current_task()
        assert handler is not None  # noqa: S101  a coroutine under uvicorn always runs in a task
        listener: asyncio.Task[Message] | None = None
        started = client_gone = expired = False

        def expire() -> None:
            nonlocal expired
            if not client_gone:  # one cancellation per request, so `uncancel` can tell
                expired = True
                handler.cancel()

        # A timer handle rather than `asyncio.timeout`: the same cancellation, at a fraction of
        # the per-request cost.
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.deadline_s, expire) if self.deadline_s else None

        async def listen_for_disconnect() -> Message:
            nonlocal client_gone
            message = await receive()  # after the body: only the disconnect (or the end) comes
            if message["type"] == "http.disconnect" and not (started or expired):
                client_gone = True
                handler.cancel()
            return message

        async def receive_then_listen() -> Message:
            nonlocal listener
            if listener is not None:  # the app asks again after the body: share the listener's
                return await asyncio.shield(listener)
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                listener = asyncio.create_task(listen_for_disconnect())
            return message

        async def send_and_note_start(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if timer is not None:
                    timer.cancel()
            await send(message)

        try:
            await self.app(scope, receive_then_listen, send_and_note_start)
        except asyncio.CancelledError:
            if not (client_gone or expired) or handler.uncancel():
                # Cancelled by the server: its drain time is up. The client still gets an
                # answer it can act on rather than uvicorn's plain-text 500.
                if not started:
                    error = NotReady("the server is shutting down; retry")
                    await error_response(error, scope["path"])(scope, receive, send)
                raise
            if expired:
                error = DeadlineExceeded(f"no answer within the {self.deadline_s:g} s deadline")
                await error_response(error, scope["path"])(scope, receive, send)
                return
            log.info("client disconnected; dropped %s %s", scope["method"], scope["path"])
            # Never reaches the client; it records the request as 499 in the metrics.
            await send({"type": "http.response.start", "status": CLIENT_CLOSED_REQUEST})
            await send({"type": "http.response.body", "body": b""})
        finally:
            if timer is not None:
                timer.cancel()
            if listener is not None:
                listener.cancel()
