"""Draining on SIGTERM: readiness fails at once, requests already received are answered, new
connections are refused, and the process exits within FMNIST_DRAIN_SECONDS.

Left to itself, uvicorn closes its listener on SIGTERM, waits for the open connections (without
limit, or until --timeout-graceful-shutdown, when it cancels the handlers still running: their
clients get a 500 or a reset) and only then runs the app's shutdown, so /readyz said 200 until
the end. `Drain`, installed by the app's lifespan, takes over the SIGTERM and SIGINT handler of
the uvicorn server that runs the app in this process, and follows this timeline (t from the
signal, D = FMNIST_DRAIN_SECONDS, W = FMNIST_DRAIN_DELAY_SECONDS):

- t = 0: the runtime is draining: /readyz and /v2/health/ready answer 503, /healthz stays 200,
  and every request is still served.
- t = W: the listener closes, so new connections are refused; uvicorn closes idle keep-alive
  connections and waits for the requests in progress. (W > 0 gives load balancers that probe
  /readyz time to stop sending first; in Kubernetes, the preStop sleep plays that part.)
- t = D - 2.5 s: requests still waiting for a model are answered 503 (the batchers stop) rather
  than cut off.
- t = D - 1.5 s: uvicorn cancels what is still running (`service.lifetime` answers those
  clients 503 with Retry-After) and runs the app's shutdown; the process exits before t = D.

As with uvicorn's own handler, a second SIGINT (Ctrl+C) closes the listener without waiting for
the delay, and a third exits at once. Where no uvicorn server handles the signals (the app served
in-process by tests, or by another server), nothing is installed.

A gRPC server of the process (FMNIST_GRPC_PORT) follows the same timeline: its health and
ServerReady fail at t = 0, it refuses new calls and connections from t = W, and the calls it has
until t = D - 1.5 s (then they are cancelled); the app's shutdown waits for it.

Under several workers, each worker drains this way; `fmnist-serve`'s supervisor passes the signal
on at once and closes its own copy of the listening socket (see `service.server`). A worker whose
supervisor dies without passing anything on (SIGKILL, a crash) drains the same way: left
serving, it would hold the port, and a new server could not start on it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any, Protocol

import uvicorn

from service.runtime import Runtime

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Before the drain time is up: requests waiting for a model are answered 503; then uvicorn
# cancels what is still running, and the app's shutdown and the exit have the rest.
STOP_BATCHERS_BEFORE_S = 2.5
CANCEL_BEFORE_S = 1.5
UVICORN_TICK_S = 0.2  # uvicorn notices should_exit within 0.1 s, then sleeps 0.1 s before waiting
READ_PENDING_S = 0.05  # after closing the listener, for requests already on accepted connections


class Listener(Protocol):
    """Another server of this process (gRPC's), closed when the HTTP listener closes."""

    def close(self, grace_s: float) -> None:
        """Refuse new work now; what is in progress has `grace_s` to finish."""


class Drain:
    def __init__(
        self,
        runtime: Runtime,
        drain_s: float,
        delay_s: float,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self.runtime = runtime
        self.drain_s = drain_s
        self.delay_s = min(delay_s, drain_s)
        self.listeners = listeners
        self.server: uvicorn.Server | None = None
        self.started_at: float | None = None  # time.monotonic() of the first signal
        self._handlers: dict[int, Any] = {}  # the server's own, by signal
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._supervisor_sentinel: int | None = None

    def install(self) -> bool:
        """Take over the SIGTERM and SIGINT handlers of the uvicorn server that runs this process
        (uvicorn installs them before the app starts), and watch the supervisor that started it,
        if any. False when no uvicorn server handles the signals."""
        if threading.current_thread() is not threading.main_thread():
            return False
        server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
        if not isinstance(server, uvicorn.Server):
            return False
        self.server = server
        self._loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            handler = signal.getsignal(sig)
            if getattr(handler, "__self__", None) is server:
                self._handlers[sig] = handler
                signal.signal(sig, self._on_signal)
        supervisor = multiprocessing.parent_process()
        if supervisor is not None and supervisor.sentinel is not None:
            # A pipe whose other end only the supervisor holds: readable once it has exited.
            self._supervisor_sentinel = supervisor.sentinel
            self._loop.add_reader(supervisor.sentinel, self._on_supervisor_exit, supervisor.pid)
        return True

    def uninstall(self) -> None:
        """Give the signals back to the server (the app is shutting down)."""
        self._stop_watching_supervisor()
        for sig, handler in self._handlers.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, handler)
        self._handlers.clear()
        if self._task is not None:
            self._task.cancel()

    def grace_s(self) -> float:
        """What is left for requests in progress: until uvicorn would cancel them, counted from
        the signal (from now when none came)."""
        started_at = self.started_at or time.monotonic()
        return max(0.0, started_at + self.drain_s - CANCEL_BEFORE_S - time.monotonic())

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        """In the main thread, between two bytecodes of whatever it was running: only set a flag
        and hand the rest to the event loop."""
        if self.server is None or self._loop is None:
            return
        if self.started_at is None:
            self.started_at = time.monotonic()
            self.runtime.draining = True  # readiness fails from here on
            self._loop.call_soon_threadsafe(self._begin, self.server, sig, frame)
        elif sig == signal.SIGINT:
            self._handlers[sig](sig, frame)  # uvicorn: stop now; once more, exit at once

    def _on_supervisor_exit(self, pid: int | None) -> None:
        self._stop_watching_supervisor()
        log.warning("the supervisor (process %s) has exited", pid)
        self._on_signal(signal.SIGTERM, None)

    def _stop_watching_supervisor(self) -> None:
        if self._loop is not None and self._supervisor_sentinel is not None:
            self._loop.remove_reader(self._supervisor_sentinel)
            self._supervisor_sentinel = None

    def _begin(self, server: uvicorn.Server, sig: int, frame: FrameType | None) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._drain(server, sig, frame), name="drain"
        )

    async def _drain(self, server: uvicorn.Server, sig: int, frame: FrameType | None) -> None:
        started_at = self.started_at or time.monotonic()
        log.info(
            "%s: draining; readiness fails now, the listener closes in %g s, the process exits "
            "within %g s",
            signal.Signals(sig).name,
            self.delay_s,
            self.drain_s,
        )
        await asyncio.sleep(max(0.0, started_at + self.delay_s - time.monotonic()))
        if not server.should_exit:
            # Close the listener first and let the loop read what connections it has already
            # accepted have sent: uvicorn's shutdown closes every connection with no request
            # under way, and a request still unread in the socket would be lost with it.
            for listener in getattr(server, "servers", []):
                listener.close()
            for other in self.listeners:
                other.close(self.grace_s())
            await asyncio.sleep(READ_PENDING_S)
            # uvicorn reads its graceful timeout when its shutdown begins, within 0.1 s.
            left = started_at + self.drain_s - CANCEL_BEFORE_S - UVICORN_TICK_S - time.monotonic()
            graceful = max(0.0, left)
            if server.config.timeout_graceful_shutdown is not None:
                graceful = min(graceful, server.config.timeout_graceful_shutdown)
            server.config.timeout_graceful_shutdown = graceful  # type: ignore[assignment]
            self._handlers[sig](sig, frame)
        remaining = started_at + self.drain_s - STOP_BATCHERS_BEFORE_S - time.monotonic()
        await asyncio.sleep(max(0.0, remaining))
        log.warning(
            "drain time nearly up: requests still waiting for a model are answered 503 "
            "(FMNIST_DRAIN_SECONDS=%g)",
            self.drain_s,
        )
        await self.runtime.stop_batchers()
