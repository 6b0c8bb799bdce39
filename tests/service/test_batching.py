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


async def test_a_single_image_behind_bulk_requests_goes_in_the_next_batch():
    """Hardening, item 12: with strict FIFO a single image waited behind every image of the
    bulk requests queued before it (17 batches for four 256-image requests)."""
    batches: list[np.ndarray] = []
    started, release = threading.Event(), threading.Event()

    def held(x):
        batches.append(x[:, 0].copy())
        started.set()
        release.wait(5)
        return (x,)

    batcher = make(held, max_batch=64, max_queue=1024, max_wait_s=0)
    batcher.start()
    bulk = [asyncio.create_task(batcher.submit(np.full((256, 1), float(i)))) for i in range(3)]
    while not started.is_set():
        await asyncio.sleep(0.005)
    single = asyncio.create_task(batcher.submit(np.full((1, 1), -1.0)))
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(*bulk, single)
    await batcher.stop()
    with_single = [i for i, batch in enumerate(batches) if -1.0 in batch]
    assert with_single == [1], f"the single image ran in batch {with_single} of {len(batches)}"
    assert all(len(batch) == 64 for batch in batches[:-1])


async def test_bulk_requests_leave_room_in_the_queue_for_small_ones():
    """Hardening, item 12: four 256-image requests filled the queue and the next single image
    got 503 at once."""
    release = threading.Event()
    batcher = make(lambda x: (release.wait(5), (x,))[1], max_batch=64, max_queue=1024)
    batcher.start()
    bulk = [asyncio.create_task(batcher.submit(np.zeros((256, 1)))) for _ in range(3)]
    await asyncio.sleep(0.02)
    with pytest.raises(Overloaded):
        await batcher.submit(np.zeros((256, 1)))
    single = asyncio.create_task(batcher.submit(np.zeros((1, 1))))
    await asyncio.sleep(0.01)
    release.set()
    assert len((await single)[0]) == 1
    await asyncio.gather(*bulk)
    await batcher.stop()


def test_every_caller_gets_exactly_its_own_rows_under_any_interleaving():
    """Property: submissions of any sizes, some cancelled, some in batches that fail; every
    caller that gets a result gets exactly its own rows, and nothing is left waiting."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    request = st.tuples(
        st.integers(1, 40),  # images
        st.booleans(),  # poisoned: the batch that holds it fails
        st.sampled_from([None, 0.0, 0.002]),  # cancelled after this many seconds, or never
        st.floats(0, 0.003),  # submitted after this many seconds
    )

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(st.lists(request, min_size=1, max_size=12), st.integers(1, 16))
    def check(requests, max_batch):
        asyncio.run(_interleave(requests, max_batch))

    check()


async def _interleave(requests, max_batch) -> None:
    in_failed_batches: set[float] = set()

    def fn(x):
        if (x[:, 1] == 1).any():
            in_failed_batches.update(x[:, 0].tolist())
            raise ValueError("poisoned batch")
        return x[:, :1] * 10, x[:, 0] + 0.5

    batcher = make(fn, max_batch=max_batch, max_wait_s=0.001, max_queue=10_000)
    batcher.start()

    async def one(index, count, poisoned, cancel_after, delay):
        await asyncio.sleep(delay)
        inputs = np.zeros((count, 2))
        inputs[:, 0] = index * 1000 + np.arange(count)
        inputs[-1, 1] = float(poisoned)
        task = asyncio.create_task(batcher.submit(inputs))
        if cancel_after is not None:
            await asyncio.sleep(cancel_after)
            task.cancel()
        try:
            scaled, shifted = await asyncio.wait_for(task, 10)
        except asyncio.CancelledError:
            return "cancelled"
        except ValueError:
            assert in_failed_batches.intersection(inputs[:, 0].tolist())
            return "failed"
        assert np.array_equal(scaled[:, 0], inputs[:, 0] * 10)
        assert np.array_equal(shifted, inputs[:, 0] + 0.5)
        assert not poisoned
        return "ok"

    outcomes = await asyncio.gather(*(one(i, *r) for i, r in enumerate(requests)))
    for (_, poisoned, cancel_after, _), outcome in zip(requests, outcomes, strict=True):
        if cancel_after is None:
            assert outcome == ("failed" if poisoned else outcome)
    await batcher.stop()
    assert batcher.queued_images == 0
