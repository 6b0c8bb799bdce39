"""A dynamic batcher: concurrent requests for one model operation share one forward pass.

Requests put their inputs (numpy arrays) in a queue and await a future. A single loop task takes
the waiting requests, waits until the batch is full or the oldest request has waited
`max_wait_s`, then joins the batch and runs it in the model's worker thread, so the event loop
never blocks on inference; its per-request work is a queue entry and a slice of the outputs.
Requests that queued while a batch was running have already waited, so they go at once.

Fair share: requests of at most a quarter batch (`quantum`) wait in a lane of their own. While
bulk requests wait too, each batch takes small requests first, up to half the batch, and fills
the rest from the bulk requests in arrival order; so a single image that arrives behind bulk
requests goes in the next batch rather than behind all of their images, and bulk requests keep
at least half of every batch. Within a lane the order is first come, first served, which gives
the lowest mean latency to requests of equal size. A request whose future is done (its client
went away, its deadline passed) is dropped when its turn comes, before any inference.

The queue is bounded in images; past the bound, requests are refused with `Overloaded` (503 with
Retry-After) instead of waiting without limit. Bulk requests (more than `quantum` images) may
fill only the first three quarters of the queue, so small requests still find room behind them.
A request into an empty queue is always taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from service.errors import NotReady, Overloaded
from service.metrics import Metrics

log = logging.getLogger(__name__)

BatchFn = Callable[[np.ndarray], tuple[np.ndarray, ...]]
"""Inputs stacked along axis 0 -> outputs, each with the same first dimension as the inputs."""

Outputs = tuple[np.ndarray, ...]


@dataclass(eq=False)
class _Request:
    inputs: np.ndarray
    future: asyncio.Future[Outputs]
    enqueued_at: float = field(default_factory=time.monotonic)
    taken: int = 0  # images already put in a batch
    running: int = 0  # batches holding some of its images that have not finished
    parts: list[Outputs] = field(default_factory=list)  # finished batches' outputs, in order

    @property
    def remaining(self) -> int:
        return len(self.inputs) - self.taken


@dataclass
class _Piece:
    """Images `start:stop` of a request, as one part of a batch."""

    request: _Request
    start: int
    stop: int


class Batcher:
    def __init__(
        self,
        model: str,
        op: str,
        fn: BatchFn,
        executor: Executor,
        metrics: Metrics,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
    ) -> None:
        self.model, self.op = model, op
        self.fn = fn  # public so that a test can slow it down
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self.quantum = max(1, max_batch // 4)
        self._executor = executor
        self._metrics = metrics
        self._queue_gauge = metrics.queue_depth.labels(model, op)
        self._small: deque[_Request] = deque()  # at most `quantum` images each
        self._bulk: deque[_Request] = deque()
        self._queued_images = 0
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def queued_images(self) -> int:
        return self._queued_images

    @property
    def crashed(self) -> bool:
        """The loop task ended other than by `stop`: nothing will run this operation again, so
        the process is not alive in any useful sense (the liveness probe says so)."""
        return self._task is not None and self._task.done() and not self._task.cancelled()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._serve(), name=f"batcher {self.model}/{self.op}"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for lane in (self._small, self._bulk):
            while lane:
                self._fail(lane.popleft(), NotReady("the service is shutting down"))
        self._set_queued(0)

    async def submit(self, inputs: np.ndarray) -> Outputs:
        """Run `fn` on `inputs` as part of some batches; returns this request's outputs."""
        if not self.running:
            raise NotReady(f"{self.model}/{self.op} is not running")
        count = len(inputs)
        self._admit(count)
        request = _Request(inputs, asyncio.get_running_loop().create_future())
        (self._small if count <= self.quantum else self._bulk).append(request)
        self._set_queued(self._queued_images + count)
        self._arrived.set()
        return await request.future

    def _admit(self, count: int) -> None:
        if not self._queued_images:
            return
        bound = self.max_queue if count <= self.quantum else self.max_queue * 3 // 4
        if self._queued_images + count > bound:
            raise Overloaded(
                f"queue for {self.model}/{self.op} is full "
                f"({self._queued_images} images waiting); retry later"
            )

    async def _serve(self) -> None:
        while True:
            pieces: list[_Piece] = []
            try:
                await self._wait_for_batch()
                pieces = self._take()
                if pieces:
                    await self._run(pieces)
            except asyncio.CancelledError:
                for piece in pieces:  # the batch that was running when the batcher was stopped
                    self._fail(piece.request, NotReady("the service is shutting down"))
                raise
            except Exception as exc:
                # A fault outside the batch function: fail exactly this batch's requests and keep
                # serving the others.
                log.exception("batcher %s/%s failed a batch", self.model, self.op)
                for piece in pieces:
                    self._fail(piece.request, exc)

    async def _wait_for_batch(self) -> None:
        """Until a request is queued, then until the batch is full or the oldest request's wait
        is up."""
        while not (self._small or self._bulk):
            self._arrived.clear()
            await self._arrived.wait()
        oldest = min(lane[0].enqueued_at for lane in (self._small, self._bulk) if lane)
        deadline = oldest + self.max_wait_s
        while self._queued_images < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def _take(self) -> list[_Piece]:
        """One batch: small requests first, up to half of it while bulk requests wait, then
        bulk requests in order, then small ones again if room is left."""
        pieces: list[_Piece] = []
        small_share = max(1, self.max_batch // 2) if self._bulk else self.max_batch
        size = self._fill(pieces, self._small, 0, small_share)
        size = self._fill(pieces, self._bulk, size, self.max_batch)
        size = self._fill(pieces, self._small, size, self.max_batch)
        self._set_queued(self._queued_images - size)
        return pieces

    def _fill(self, pieces: list[_Piece], lane: deque[_Request], size: int, limit: int) -> int:
        """Adds images from the front of `lane` until the batch holds `limit`; a small request
        goes whole or waits, a bulk one may be split. Returns the batch's new size."""
        while lane and size < limit:
            request = lane[0]
            if request.future.done():  # client gone, deadline passed, or failed
                self._set_queued(self._queued_images - lane.popleft().remaining)
                continue
            count = min(request.remaining, limit - size)
            if count < request.remaining and lane is self._small:
                break
            pieces.append(_Piece(request, request.taken, request.taken + count))
            request.taken += count
            request.running += 1
            size += count
            if not request.remaining:
                lane.popleft()
        return size

    async def _run(self, pieces: list[_Piece]) -> None:
        inputs = [piece.request.inputs[piece.start : piece.stop] for piece in pieces]
        started = time.perf_counter()
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run_batch, inputs
            )
        except Exception as exc:
            for piece in pieces:
                self._fail(piece.request, exc)
            return
        size = sum(len(part) for part in inputs)
        self._metrics.observe_batch(self.model, self.op, size, time.perf_counter() - started)
        start = 0
        for piece in pieces:
            end = start + piece.stop - piece.start
            self._deliver(piece.request, tuple(output[start:end] for output in outputs))
            start = end

    def _run_batch(self, parts: list[np.ndarray]) -> Outputs:
        """In the worker thread: join the requests' inputs and run the batch."""
        return self.fn(parts[0] if len(parts) == 1 else np.concatenate(parts))

    @staticmethod
    def _deliver(request: _Request, outputs: Outputs) -> None:
        """One batch's rows for `request`; the future resolves once all its images have run."""
        request.running -= 1
        if request.future.done():
            return
        request.parts.append(outputs)
        if request.remaining or request.running:
            return
        parts = request.parts
        request.future.set_result(
            parts[0]
            if len(parts) == 1
            else tuple(np.concatenate(p) for p in zip(*parts, strict=True))
        )

    def _set_queued(self, images: int) -> None:
        self._queued_images = images
        self._queue_gauge.set(images)

    @staticmethod
    def _fail(request: _Request, exc: BaseException) -> None:
        if not request.future.done():
            request.future.set_exception(exc)
