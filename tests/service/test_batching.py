"""The dynamic batcher on its own: batches form, results go back to the right request,
the queue is bounded, and failures and shutdown reach the waiting requests."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.batching import Batcher
from service.errors import NotReady, Overloaded
from service.metrics import Metrics

pytestmark = pytest.mark.anyio


def make(fn, **limits) -> Batcher:
    options = {"max_batch": 8, "max_wait_s": 0.02, "max_queue": 100} | limits
    return Batcher("m", "op", fn, ThreadPoolExecutor(1), Metrics(), **options)


def doubled(sizes: list[int]):
    def fn(x: np.ndarray) -> tuple[np.ndarray, ...]:
        sizes.append(len(x))
        return x * 2, x.sum(axis=1)

    return fn


async def test_concurrent_requests_share_batches_and_get_their_own_results():
    sizes: list[int] = []
    batcher = make(doubled(sizes))
    batcher.start()
    inputs = [np.full((1, 3), float(i)) for i in range(20)]
    results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
    await batcher.stop()
    for x, (double, total) in zip(inputs, results, strict=True):
        assert np.array_equal(double, x * 2) and np.array_equal(total, x.sum(axis=1))
    assert sum(sizes) == 20 and max(sizes) == 8  # full batches formed
    samples = batcher._metrics.batch_size.labels("m", "op")._sum.get()
    assert samples == 20


async def test_a_large_request_is_split_into_batches():
    sizes: list[int] = []
    batcher = make(doubled(sizes))
    batcher.start()
    x = np.arange(60.0).reshape(20, 3)
    double, total = await batcher.submit(x)
    await batcher.stop()
    assert np.array_equal(double, x * 2) and np.array_equal(total, x.sum(axis=1))
    assert sizes == [8, 8, 4]


async def test_a_lone_request_waits_at_most_max_wait():
    batcher = make(doubled([]), max_wait_s=0.05)
    batcher.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await batcher.submit(np.zeros((1, 3)))
    assert loop.time() - started < 0.5
    await batcher.stop()


async def test_full_queue_refuses_but_an_empty_queue_takes_any_request():
    started, release = threading.Event(), threading.Event()

    def held(x):
        started.set()
        release.wait(5)
        return (x,)

    batcher = make(held, max_batch=4, max_queue=4, max_wait_s=0)
    batcher.start()
    first = asyncio.create_task(batcher.submit(np.zeros((4, 1))))  # runs, holding the thread
    while not started.is_set():
        await asyncio.sleep(0.005)
    second = asyncio.create_task(batcher.submit(np.zeros((3, 1))))  # waits in the queue
    await asyncio.sleep(0.01)
    assert batcher.queued_images == 3
    with pytest.raises(Overloaded) as refused:
        await batcher.submit(np.zeros((2, 1)))
    assert refused.value.headers == {"Retry-After": "1"}
    release.set()
    await asyncio.gather(first, second)
    assert len((await batcher.submit(np.zeros((10, 1))))[0]) == 10  # larger than the queue
    await batcher.stop()


async def test_errors_reach_every_request_of_the_batch():
    def broken(x):
        raise ValueError("boom")

    batcher = make(broken)
    batcher.start()
    results = await asyncio.gather(
        *(batcher.submit(np.zeros((1, 1))) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ValueError) for r in results)
    assert batcher.running
    await batcher.stop()


async def test_stop_fails_waiting_requests_and_refuses_new_ones():
    release = threading.Event()
    batcher = make(lambda x: (release.wait(5), (x,))[1], max_batch=1, max_wait_s=0)
    batcher.start()
    running = asyncio.create_task(batcher.submit(np.zeros((1, 1))))
    waiting = asyncio.create_task(batcher.submit(np.zeros((1, 1))))
    await asyncio.sleep(0.02)
    stopping = asyncio.create_task(batcher.stop())
    await asyncio.sleep(0.02)
    release.set()
    await stopping
    with pytest.raises(NotReady):
        await waiting
    with pytest.raises(NotReady):
        await batcher.submit(np.zeros((1, 1)))
    running.cancel()


async def test_requests_whose_client_left_are_skipped():
    sizes: list[int] = []
    release = threading.Event()

    def held(x):
        release.wait(5)
        sizes.append(len(x))
        return (x,)

    batcher = make(held, max_batch=4, max_wait_s=0)
    batcher.start()
    first = asyncio.create_task(batcher.submit(np.zeros((1, 1))))
    await asyncio.sleep(0.02)
    abandoned = asyncio.create_task(batcher.submit(np.zeros((2, 1))))
    kept = asyncio.create_task(batcher.submit(np.zeros((1, 1))))
    await asyncio.sleep(0.01)
    abandoned.cancel()
    release.set()
    await asyncio.gather(first, kept)
    assert sizes == [1, 1]
    assert batcher.queued_images == 0
    await batcher.stop()


async def test_a_fault_outside_the_batch_function_fails_only_that_batch(monkeypatch):
    """Hardening, item 13: an exception outside `_run`'s try (here the metrics, after the batch
    ran) used to leave the batch's requests waiting forever and end the batcher for good."""
    batcher = make(doubled([]))
    batcher.start()
    observe = batcher._metrics.observe_batch
    calls = 0

    def broken_once(*args):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("metrics bug")
        observe(*args)

    monkeypatch.setattr(batcher._metrics, "observe_batch", broken_once)
    with pytest.raises(RuntimeError, match="metrics bug"):
        await asyncio.wait_for(batcher.submit(np.ones((1, 2), np.float32)), 5)
    out, _ = await asyncio.wait_for(batcher.submit(np.ones((1, 2), np.float32)), 5)
    assert out.tolist() == [[2.0, 2.0]] and batcher.running and not batcher.crashed
    await batcher.stop()
    assert not batcher.crashed  # stopped, not dead


async def test_a_dead_batcher_fails_liveness(client):
    """Hardening, item 13: a batcher that died left /readyz at 503 and /healthz at 200."""
    runtime = client.app.state.runtime
    batcher = runtime.models["lenet"].batchers["classify"]
    original = batcher._task
    dead = asyncio.get_running_loop().create_future()
    dead.set_exception(SystemError("the loop task died"))
    batcher._task = dead
    try:
        response = await client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "not_alive"
    finally:
        batcher._task = original
        dead.exception()  # retrieved, so the event loop does not report it
    assert (await client.get("/healthz")).status_code == 200
