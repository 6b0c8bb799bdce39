"""Requests that are cheap to send and were costly to serve (hardening items 1-3 and 11), and
the per-request deadline: each is now refused or dropped before the work it would cost."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

import service.imaging
import service.inputs
from service.decoding import Decoder
from service.errors import NotReady
from tests.service.hostile_files import png_with_text_chunks, tiff_with_strips
from tests.service.support import assert_error, make_settings, post_scope, serving

pytestmark = pytest.mark.anyio


def big_png(side: int) -> bytes:
    """A side x side black PNG: a few kilobytes that decode to side² pixels."""
    buffer = io.BytesIO()
    Image.new("L", (side, side)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


async def test_a_tiff_with_far_more_strips_than_rows_is_refused_unread(client):
    """1: a 64x64 TIFF of 600,000 one-row strips (4.8 MB) took 6 s of decoding."""
    started = time.perf_counter()
    response = await client.post(
        "/classify",
        content=tiff_with_strips(600_000),
        headers={"Content-Type": "image/tiff"},
    )
    assert_error(response, 400, "invalid_image")
    assert "600000 strips" in response.json()["error"]["message"]
    assert time.perf_counter() - started < 1.0
    honest = await client.post(
        "/classify", content=tiff_with_strips(64), headers={"Content-Type": "image/tiff"}
    )
    assert honest.status_code == 200, honest.text


async def test_a_png_with_megabytes_of_compressed_text_is_refused(client, monkeypatch):
    """1: 63 zTXt chunks (66 KB) were inflated to 63 MB while the header was read."""
    inflated = []
    real = service.imaging.Image.open

    def spy(*args, **kwargs):
        image = real(*args, **kwargs)
        inflated.append(sum(len(str(v)) for v in image.info.values()))
        return image

    monkeypatch.setattr(service.imaging.Image, "open", spy)
    body = png_with_text_chunks(63)
    assert len(body) < 70_000
    response = await client.post("/classify", content=body, headers={"Content-Type": "image/png"})
    assert_error(response, 400, "invalid_image")
    assert not inflated  # refused while opening, before 63 MB of text existed
    small_text = await client.post(
        "/classify",
        content=png_with_text_chunks(2, 1000),
        headers={"Content-Type": "image/png"},
    )
    assert small_text.status_code == 200, small_text.text


async def test_a_slow_decode_does_not_hold_up_other_requests(client, monkeypatch):
    """1: while a costly upload was decoded on the loop, /healthz waited 5.7 s."""
    real = service.imaging.to_model_input
    decoding = threading.Event()

    def slow(*args, **kwargs):
        decoding.set()
        time.sleep(1.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(service.imaging, "to_model_input", slow)
    upload = asyncio.create_task(
        client.post("/classify", content=big_png(64), headers={"Content-Type": "image/png"})
    )
    while not decoding.is_set():
        await asyncio.sleep(0.005)
    started = time.perf_counter()
    assert (await client.get("/healthz")).status_code == 200
    assert time.perf_counter() - started < 0.5
    assert (await upload).status_code == 200


async def test_the_pixel_budget_is_per_request_and_checked_before_decoding(monkeypatch):
    """2: the pixel limit was per image, and a request may hold 256 images: sixteen 4096x4096
    PNGs (352 KB) took 5.4 s and gigabytes of memory."""
    decoded = []
    real = service.imaging.to_model_input
    monkeypatch.setattr(
        service.imaging,
        "to_model_input",
        lambda *args, **kwargs: decoded.append(1) or real(*args, **kwargs),
    )
    settings = make_settings(models=["lenet"], max_request_pixels=3 * 512 * 512)
    async with serving(settings) as client:
        files = [("file", (f"{i}.png", big_png(512), "image/png")) for i in range(4)]
        error = assert_error(
            await client.post("/classify?model=lenet", files=files), 413, "image_too_large"
        )
        assert str(3 * 512 * 512) in error["message"]
        assert not decoded
        response = await client.post("/classify?model=lenet", files=files[:3])
        assert response.status_code == 200 and len(response.json()["predictions"]) == 3
    decoded.clear()
    encoded = [base64.b64encode(big_png(4096)).decode()] * 2
    async with serving(make_settings(models=["lenet"])) as client:  # the default budget
        response = await client.post("/classify?model=lenet", json={"images": encoded})
        assert_error(response, 413, "image_too_large")
        assert not decoded


async def test_a_json_body_with_more_values_than_any_request_needs_is_refused_unparsed(
    client, monkeypatch
):
    """3: a 10 MiB `pixels` body cost ~150 MiB and 0.9 s of parsing before its shape was
    refused."""
    parsed = []
    real = service.inputs.json_object
    monkeypatch.setattr(
        service.inputs, "json_object", lambda *args: parsed.append(1) or real(*args)
    )
    body = b'{"pixels": [' + b",".join([b"0"] * (5 * 2**20 - 8)) + b"]}"
    assert len(body) <= 10 * 2**20
    response = await client.post(
        "/classify", content=body, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "too_many_images")
    assert not parsed
    full = {"pixels": np.zeros((256, 28, 28), int).tolist()}  # the most a request may carry
    response = await client.post("/classify?model=lenet", json=full)
    assert response.status_code == 200, response.text


async def held_model(client, model: str = "lenet"):
    """Holds `model`'s classify batches until the returned event is set."""
    batcher = client.app.state.runtime.models[model].batchers["classify"]
    release, seen = threading.Event(), []
    original = batcher.fn

    def held(inputs):
        seen.append(len(inputs))
        release.wait(10)
        return original(inputs)

    batcher.fn = held
    return batcher, release, seen


async def one_request_held(client):
    """`held_model`, plus one single-image /classify request started and held in its batch."""
    batcher, release, seen = await held_model(client)
    pixels = {"pixels": np.zeros((1, 28, 28), int).tolist()}
    request = asyncio.create_task(client.post("/classify?model=lenet", json=pixels))
    while not seen:
        await asyncio.sleep(0.005)
    return batcher, release, seen, request


async def test_a_request_past_its_deadline_is_dropped_and_answered_504():
    settings = make_settings(models=["lenet"], request_deadline_s=0.5, max_batch_size=1)
    async with serving(settings) as client:
        batcher, release, seen, first = await one_request_held(client)
        late = await client.post(
            "/classify?model=lenet", json={"pixels": np.zeros((3, 28, 28), int).tolist()}
        )
        error = assert_error(late, 504, "deadline_exceeded")
        assert late.headers["retry-after"] == "1" and "0.5 s" in error["message"]
        assert (await first).status_code == 504  # its batch was running: answered all the same
        release.set()
        await asyncio.sleep(0.1)
        assert seen == [1]  # the late request's images never reached the model
        assert batcher.queued_images == 0
        assert (await client.get("/healthz")).status_code == 200


async def test_the_work_of_a_client_that_disconnected_is_dropped_before_inference():
    """11: uvicorn does not cancel a handler whose client went away, so its images were still
    decoded and run. Driven at the ASGI level, with uvicorn's receive semantics: the body, then
    `http.disconnect` when the connection drops."""
    async with serving(make_settings(models=["lenet"], max_batch_size=1)) as client:
        app = client.app
        batcher, release, seen, running = await one_request_held(client)
        body = json.dumps({"pixels": np.zeros((5, 28, 28), int).tolist()}).encode()
        gone = asyncio.Event()
        sent: list[dict] = []

        async def receive():
            if not sent and not gone.is_set():
                sent.append({})
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        messages: list[dict] = []

        async def send(message):
            messages.append(message)

        abandoned = asyncio.create_task(
            app(post_scope("/classify", b"model=lenet", b"application/json"), receive, send)
        )
        while batcher.queued_images < 5:
            await asyncio.sleep(0.005)
        gone.set()  # the client hangs up while its images wait behind the held batch
        await asyncio.wait_for(abandoned, 5)
        release.set()
        assert (await running).status_code == 200
        assert seen == [1]  # only the first request's image ran
        assert batcher.queued_images == 0
        assert messages[0]["status"] == 499  # never sent on a closed connection; counted
        metrics = (await client.get("/metrics")).text
        assert 'status="499"' in metrics


async def test_past_its_in_flight_limit_a_worker_refuses_at_once_but_still_answers_probes():
    settings = make_settings(models=["lenet"], max_in_flight=2, max_batch_size=1)
    async with serving(settings) as client:
        _, release, seen = await held_model(client)
        pixels = {"pixels": np.zeros((1, 28, 28), int).tolist()}
        admitted = [
            asyncio.create_task(client.post("/classify?model=lenet", json=pixels)) for _ in range(2)
        ]
        while not seen:
            await asyncio.sleep(0.005)
        refused = await client.post("/classify?model=lenet", json=pixels)
        error = assert_error(refused, 503, "overloaded")
        assert refused.headers["retry-after"] == "1" and "limit" in error["message"]
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        release.set()
        assert [(await task).status_code for task in admitted] == [200, 200]
        assert (await client.post("/classify?model=lenet", json=pixels)).status_code == 200


async def test_deadline_and_overload_answers_to_v2_requests_are_in_the_v2_error_shape():
    settings = make_settings(models=["lenet"], request_deadline_s=0.3, max_batch_size=1)
    async with serving(settings) as client:
        _, release, _, holding = await one_request_held(client)
        body = {
            "inputs": [
                {
                    "name": "images",
                    "shape": [1, 28, 28],
                    "datatype": "FP32",
                    "data": [0.0] * 784,
                }
            ]
        }
        late = await client.post("/v2/models/lenet/infer", json=body)
        assert late.status_code == 504 and late.headers["retry-after"] == "1"
        assert isinstance(late.json()["error"], str) and "deadline" in late.json()["error"]
        release.set()
        await holding
    async with serving(make_settings(models=["lenet"], max_in_flight=1)) as client:
        _, release, _, holding = await one_request_held(client)
        refused = await client.post("/v2/models/lenet/infer", json=body)
        assert refused.status_code == 503 and isinstance(refused.json()["error"], str)
        release.set()
        assert (await holding).status_code == 200


async def test_a_request_the_server_cancels_at_the_end_of_its_drain_gets_a_503():
    """At the end of the drain time uvicorn cancels the handlers still running; their clients
    got a plain-text 500."""
    async with serving(make_settings(models=["lenet"], max_batch_size=1)) as client:
        _, release, seen = await held_model(client)
        body = json.dumps({"pixels": [np.zeros((28, 28), int).tolist()]}).encode()
        messages: list[dict] = []
        delivered = asyncio.Event()

        async def receive():
            if not delivered.is_set():
                delivered.set()
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client stays connected

        async def send(message):
            messages.append(message)

        handler = asyncio.create_task(
            client.app(post_scope("/classify", b"model=lenet", b"application/json"), receive, send)
        )
        while not seen:
            await asyncio.sleep(0.005)
        handler.cancel()  # what uvicorn does once its graceful-shutdown timeout has passed
        with pytest.raises(asyncio.CancelledError):
            await handler
        release.set()
        start = messages[0]
        assert start["status"] == 503
        assert (b"retry-after", b"1") in start["headers"]
        assert json.loads(messages[1]["body"])["error"]["code"] == "not_ready"


async def test_a_decode_asked_for_after_the_decoder_closed_fails_instead_of_hanging():
    decoder = Decoder(1)
    assert await decoder.run(sum, [1, 2]) == 3
    decoder.close()
    with pytest.raises(NotReady):
        await asyncio.wait_for(decoder.run(sum, [1, 2]), 2)
