"""uvicorn's HTTP protocol (httptools) with the limits it lacks on request heads and connections.

ASGI only sees a request once its head is complete, so what a client can do before that is
bounded here, in the protocol `fmnist-serve` gives uvicorn (its `http` option):

- a head must arrive within `head_timeout_s`: from the connection's start for its first
  request (uvicorn has no timer there at all: a connection that sends nothing stays open), from
  its first byte for each later one (between requests uvicorn's keep-alive timeout applies);
- a head may hold at most `max_head_bytes` (request line and header fields) and `max_headers`
  fields; httptools keeps an unfinished header line in memory until it ends, so the bytes of an
  unfinished head are counted as they arrive, which bounds what each connection holds;
- a worker keeps at most `max_connections` open: past that, idle keep-alive connections are
  closed to make room, and when none is idle the new connection is refused.

Past a limit the client gets the service's JSON error (408, 431 or 503, `Connection: close`) and
the connection is closed. Body limits are the app's (`service.middleware.BodyLimits`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.errors import error_body

REASONS = {
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class HeadLimits:
    head_timeout_s: float
    max_head_bytes: int
    max_headers: int
    max_connections: int


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a head that broke a limit."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: HeadLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.in_head = True  # between requests or inside a head: not inside a body
        self.head_bytes = 0  # bytes received since the head began (an upper bound of its size)
        self.head_fields = 0
        self.head_size = 0  # of the head's URL and fields parsed so far: exact, unlike head_bytes
        self.head_timer: asyncio.TimerHandle | None = None

    # The connection.

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections and not self._close_an_idle_one():
            self._refuse(
                503,
                "too_many_connections",
                f"this worker holds {self.limits.max_connections} connections, its limit; "
                "retry later",
            )
            return
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _close_an_idle_one(self) -> bool:
        """Close one idle keep-alive connection of this worker (no request in progress, no
        part of a head received), to make room for a new one; False if there is none."""
        for other in list(self.connections):
            if other is self or not isinstance(other, LimitedHttpToolsProtocol):
                continue
            if other.is_idle:
                other.transport.close()
                return True
        return False

    @property
    def is_idle(self) -> bool:
        idle_cycle = self.cycle is None or self.cycle.response_complete
        return idle_cycle and self.in_head and self.head_bytes == 0 and not self.pipeline

    # The head.

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the head's limits: bytes are counted while a head is being received
        (the parser callbacks below count its fields and reset the count when it is whole)."""
        if self.in_head:
            self.head_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as error:
            refused = error.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.status, refused.code, refused.message)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self.in_head and self.head_bytes > self.limits.max_head_bytes:
            self._refuse(*self._head_too_large())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_fields = self.head_size = 0
        if self.head_timer is None:
            self._start_head_timer()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_head_bytes:
            raise _Refused(*self._head_too_large())

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_fields += 1
        self.head_size += len(self.url) if self.head_fields == 1 else 0
        self.head_size += len(name) + len(value) + 4  # ": " and the line break
        if self.head_size > self.limits.max_head_bytes:
            raise _Refused(*self._head_too_large())
        if self.head_fields > self.limits.max_headers:
            raise _Refused(
                431,
                "request_header_fields_too_large",
                f"the request has more than {self.limits.max_headers} header fields",
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        self.in_head, self.head_bytes = False, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.in_head = True
        super().on_message_complete()

    def _head_too_large(self) -> tuple[int, str, str]:
        return (
            431,
            "request_header_fields_too_large",
            f"the request head exceeds {self.limits.max_head_bytes} bytes",
        )

    # The head's timer.

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self.head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.in_head and (self.cycle is None or self.cycle.response_complete):
            self._refuse(
                408,
                "request_timeout",
                f"no whole request head arrived within {self.limits.head_timeout_s:g} s",
            )

    # Refusing.

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer the service's JSON error and close the connection."""
        self._stop_head_timer()
        if self.transport.is_closing():
            return
        body = json.dumps(error_body(code, message)).encode()
        head = [
            f"HTTP/1.1 {status} {REASONS[status]}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            "connection: close",
        ]
        if status == 503:
            head.append("retry-after: 1")
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        self.transport.close()
