"""A dynamic batcher: concurrent requests for one model operation share one forward pass.

Requests put their inputs (numpy arrays) in a queue and await a future. A single loop task takes
the oldest request, waits until the batch is full or the oldest request has waited `max_wait_s`,
then joins the batch and runs it in the model's worker thread, so the event loop never blocks on
inference; its per-request work is a queue entry and a slice of the outputs.
Requests that queued while a batch was running have already waited, so they go at once.
The queue is bounded in images; past the bound, requests are refused with `Overloaded` (503 with
Retry-After) instead of waiting without limit. A request into an empty queue is always taken.
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


@dataclass
class _Job:
    inputs: np.ndarray
    future: asyncio.Future[tuple[np.ndarray, ...]]
    enqueued_at: float = field(default_factory=time.monotonic)


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
        self._executor = executor
        self._metrics = metrics
        self._queue_gauge = metrics.queue_depth.labels(model, op)
        self._jobs: deque[_Job] = deque()
        self._queued_images = 0
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def queued_images(self) -> int:
        return self._queued_images

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._serve(), name=f"batcher {self.model}/{self.op}"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._jobs:
            self._fail(self._jobs.popleft(), NotReady("the service is shutting down"))
        self._set_queued(0)

    async def submit(self, inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        """Run `fn` on `inputs` as part of some batch; returns this request's slice of outputs."""
        if not self.running:
            raise NotReady(f"{self.model}/{self.op} is not running")
        count = len(inputs)
        if self._queued_images and self._queued_images + count > self.max_queue:
            raise Overloaded(
                f"queue for {self.model}/{self.op} is full "
                f"({self._queued_images} images waiting); retry later"
            )
        loop = asyncio.get_running_loop()
        jobs = [
            _Job(inputs[start : start + self.max_batch], loop.create_future())
            for start in range(0, count, self.max_batch)
        ]
        self._jobs.extend(jobs)
        self._set_queued(self._queued_images + count)
        self._arrived.set()
        if len(jobs) == 1:
            return await jobs[0].future
        results = await asyncio.gather(*(job.future for job in jobs))
        return tuple(np.concatenate(parts) for parts in zip(*results, strict=True))

    @property
    def crashed(self) -> bool:
        """The loop task ended other than by `stop`: nothing will run this operation again, so
        the process is not alive in any useful sense (the liveness probe says so)."""
        return self._task is not None and self._task.done() and not self._task.cancelled()

    async def _serve(self) -> None:
        while True:
            jobs: list[_Job] = []
            try:
                await self._wait_for_batch()
                jobs = self._take()
                if jobs:
                    await self._run(jobs)
            except asyncio.CancelledError:
                for job in jobs:  # the batch that was running when the batcher was stopped
                    self._fail(job, NotReady("the service is shutting down"))
                raise
            except Exception as exc:
                # A fault outside the batch function: fail exactly this batch's requests and keep
                # serving the others.
                log.exception("batcher %s/%s failed a batch", self.model, self.op)
                for job in jobs:
                    self._fail(job, exc)

    async def _wait_for_batch(self) -> None:
        """Until a job is queued, then until the batch is full or the oldest job's wait is up."""
        while not self._jobs:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._jobs[0].enqueued_at + self.max_wait_s
        while self._queued_images < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def _take(self) -> list[_Job]:
        """The oldest jobs that fit in one batch, skipping those whose client went away."""
        jobs: list[_Job] = []
        size = taken = 0
        while self._jobs and size + len(self._jobs[0].inputs) <= self.max_batch:
            job = self._jobs.popleft()
            taken += len(job.inputs)
            if not job.future.done():
                jobs.append(job)
                size += len(job.inputs)
        self._set_queued(self._queued_images - taken)
        return jobs

    async def _run(self, jobs: list[_Job]) -> None:
        parts = [job.inputs for job in jobs]
        started = time.perf_counter()
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run_batch, parts
            )
        except Exception as exc:
            for job in jobs:
                self._fail(job, exc)
            return
        size = sum(len(part) for part in parts)
        self._metrics.observe_batch(self.model, self.op, size, time.perf_counter() - started)
        start = 0
        for job in jobs:
            end = start + len(job.inputs)
            if not job.future.done():
                job.future.set_result(tuple(output[start:end] for output in outputs))
            start = end

    def _run_batch(self, parts: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        """In the worker thread: join the requests' inputs and run the batch."""
        return self.fn(parts[0] if len(parts) == 1 else np.concatenate(parts))

    def _set_queued(self, images: int) -> None:
        self._queued_images = images
        self._queue_gauge.set(images)

    @staticmethod
    def _fail(job: _Job, exc: BaseException) -> None:
        if not job.future.done():
            job.future.set_exception(exc)
