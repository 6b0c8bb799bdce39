"""What every call of the inference service goes through, as each HTTP request goes through the
app's middleware: the API key, the in-flight limit, the deadline, the mapping of errors to
status codes (`service.grpc.status`) and the metrics.

- The API key (FMNIST_API_KEY, when set) comes as metadata, the two ways the HTTP side takes it:
  `authorization: Bearer <key>` or `x-api-key: <key>`. Liveness, readiness and server metadata
  stay open, like their REST routes.
- Calls that carry work (inference, repository loads) take a place of FMNIST_MAX_IN_FLIGHT in
  this worker, counted apart from HTTP's; past it they are answered UNAVAILABLE.
- The deadline is the nearer of the client's (`grpc-timeout`) and FMNIST_REQUEST_DEADLINE_S.
  When it passes, the call's work is cancelled, so its images leave the batcher's queue before
  any inference, and the answer is DEADLINE_EXCEEDED. A call its client cancels is cancelled the
  same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import grpc

from service.dependencies import check_api_key
from service.errors import DeadlineExceeded, Overloaded, ServiceError
from service.grpc.status import code_of, trailers_of
from service.metrics import Metrics
from service.settings import Settings

log = logging.getLogger(__name__)
Answer = TypeVar("Answer")
BEARER = "bearer "


class Calls:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.api_key = settings.api_key
        self.deadline_s = settings.request_deadline_s or None
        self.max_in_flight = settings.max_in_flight or None
        self.metrics = metrics
        self.in_flight = 0

    async def run(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        work: Callable[[], Awaitable[Answer]],
        protected: bool,
        admitted: bool,
        stream: bool,
    ) -> Answer:
        """`work()`'s answer, or the call aborted with the status code of what went wrong. A
        `stream` has the client's deadline only: the service's applies to each of its requests
        (`within_deadline`), which a long-lived stream would otherwise outlive."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            if protected:
                self.authorize(context)
            with self.place() if admitted else contextlib.nullcontext():
                service_s = None if stream else self.deadline_s
                return await within_deadline(work, service_s, context.time_remaining())
        except ServiceError as error:
            code = code_of(error)
            await context.abort(code, error.message, trailers_of(error))
            raise  # not reached: abort raises
        except asyncio.CancelledError:
            remaining = context.time_remaining()
            expired = remaining is not None and remaining <= 0
            code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("unhandled error in gRPC %s", method)
            await context.abort(code, "internal error; the request was not completed")
            raise
        finally:
            self.metrics.observe_rpc(method, code.name, time.perf_counter() - started)

    def authorize(self, context: grpc.aio.ServicerContext) -> None:
        """`Unauthorized` unless the call's metadata carries the API key (when one is set)."""
        if self.api_key is None:
            return
        metadata = {key: value for key, value in context.invocation_metadata() or ()}
        bearer = str(metadata.get("authorization", ""))
        supplied = bearer[len(BEARER) :] if bearer.lower().startswith(BEARER) else None
        check_api_key(supplied or metadata.get("x-api-key"), self.api_key)

    @contextlib.contextmanager
    def place(self) -> Iterator[None]:
        """A place of the in-flight limit for the work inside; `Overloaded` when none is left."""
        if self.max_in_flight is not None and self.in_flight >= self.max_in_flight:
            raise Overloaded(
                f"this worker is serving {self.in_flight} gRPC calls, its limit; retry later"
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


async def within_deadline(
    work: Callable[[], Awaitable[Answer]], service_s: float | None, client_s: float | None
) -> Answer:
    """`work()`, cancelled and answered `DeadlineExceeded` once the nearer deadline passes."""
    limits = [s for s in (service_s, client_s) if s is not None]
    if not limits:
        return await work()
    limit = min(limits)
    try:
        async with asyncio.timeout(limit):
            return await work()
    except TimeoutError:
        whose = "the client's" if limit == client_s else "the service's"
        raise DeadlineExceeded(f"no answer within {whose} {limit:.3g} s deadline") from None
