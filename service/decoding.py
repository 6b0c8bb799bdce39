"""Where request bodies are parsed and images decoded: in a few threads, not on the event loop,
so a costly upload cannot stall the other requests (or the health probes). (`service.inputs`
decodes small plain PNGs on the loop while the decoder is `idle`: there the work is bounded and
smaller than a hand-off.)

The calls made during one turn of the event loop go to the threads in one hand-off. Under load
many requests' bodies complete in the same turn, and a hand-off to a thread costs about as much
as decoding a small image, so one per request would cost the service a quarter of its
throughput. At most `threads` decodes run at once, which with the per-request pixel budget
(`FMNIST_MAX_REQUEST_PIXELS`) bounds the memory that decoding can take.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from service.errors import NotReady

T = TypeVar("T")
_Call = tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]


class Decoder:
    def __init__(self, threads: int) -> None:
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="decode")
        self._pending: list[_Call] = []
        self._handed_off = 0  # hand-offs whose calls have not all been settled

    @property
    def idle(self) -> bool:
        """Nothing waiting for or running in the threads."""
        return not (self._pending or self._handed_off)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a decoding thread; its exception, if any, is raised here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._hand_off, loop)
        self._pending.append((fn, args, future))
        return await future

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _hand_off(self, loop: asyncio.AbstractEventLoop) -> None:
        calls, self._pending = self._pending, []
        self._handed_off += 1
        try:
            self._executor.submit(_run_all, loop, calls, self._done)
        except RuntimeError:  # closed: the server is stopping
            self._handed_off -= 1
            _settle(
                [(future, None, NotReady("the server is shutting down")) for *_, future in calls]
            )

    def _done(self, outcomes: list[tuple[asyncio.Future[Any], Any, Exception | None]]) -> None:
        """On the loop: one hand-off's outcomes."""
        self._handed_off -= 1
        _settle(outcomes)


def _run_all(
    loop: asyncio.AbstractEventLoop,
    calls: list[_Call],
    settle: Callable[[list[tuple[asyncio.Future[Any], Any, Exception | None]]], None],
) -> None:
    """In a decoding thread: every call of one hand-off, then one wake-up of the loop."""
    outcomes = []
    for fn, args, future in calls:
        if future.cancelled():  # the request was dropped meanwhile (client gone, deadline)
            continue
        try:
            outcomes.append((future, fn(*args), None))
        except Exception as exc:  # handed to the caller, who maps it to a response
            outcomes.append((future, None, exc))
    if not loop.is_closed():  # else the server has stopped and nobody waits for these
        loop.call_soon_threadsafe(settle, outcomes)


def _settle(outcomes: list[tuple[asyncio.Future[Any], Any, Exception | None]]) -> None:
    for future, result, exc in outcomes:
        if future.done():
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
