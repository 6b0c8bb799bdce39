"""Every error a client can cause: its status and code, and the service still serving after."""

from __future__ import annotations

import asyncio
import struct
import threading
import zlib

import httpx
import numpy as np
import pytest

from tests.service.support import assert_error, image_request, make_settings, png, serving

pytestmark = pytest.mark.anyio

NOISE_PNG = png(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
GOOD_PIXELS = {
    "pixels": [[[0] * 28] * 10 + [[0] * 10 + [255] * 8 + [0] * 10] * 8 + [[0] * 28] * 10]
}


async def assert_still_serves(client: httpx.AsyncClient, model: str = "lenet") -> None:
    response = await client.post(f"/classify?model={model}", json=GOOD_PIXELS)
    assert response.status_code == 200, response.text


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but which holds almost no pixel data: a
    decompression-bomb stand-in. Decoding it would fail as truncated, so a 413 proves that
    the size was refused before any decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


@pytest.fixture(scope="module")
async def limited(anyio_backend):
    """An app with small limits, so that every limit can be crossed cheaply."""
    settings = make_settings(
        models=["lenet"], max_upload_bytes=20_000, max_images_per_request=3, max_image_pixels=10_000
    )
    async with serving(settings) as client:
        yield client


BAD_BODIES = {
    "text file": (
        {"files": {"file": ("notes.txt", b"hello, not an image", "text/plain")}},
        400,
        "invalid_image",
    ),
    "truncated png": (
        {
            "content": NOISE_PNG[: len(NOISE_PNG) // 2],
            "headers": {"Content-Type": "image/png"},
        },
        400,
        "invalid_image",
    ),
    "corrupt png": (
        {
            "content": png(np.zeros((28, 28), np.uint8))[:40] + b"\xff" * 200,
            "headers": {"Content-Type": "image/png"},
        },
        400,
        "invalid_image",
    ),
    "empty raw body": (
        {"content": b"", "headers": {"Content-Type": "image/png"}},
        400,
        "no_images",
    ),
    "no body at all": ({}, 400, "no_images"),
    "empty file": ({"files": {"file": ("a.png", b"", "image/png")}}, 400, "invalid_image"),
    "no file field": (
        {"files": {"picture": ("a.png", png(np.zeros((28, 28), np.uint8)), "image/png")}},
        400,
        "no_images",
    ),
    "text field named file": (
        {"data": {"file": "abc"}, "files": {"other": ("x", b"x")}},
        400,
        "invalid_image",
    ),
    "multipart without a boundary": (
        {"content": b"xx", "headers": {"Content-Type": "multipart/form-data"}},
        400,
        "invalid_image",
    ),
    "multipart garbage": (
        {"content": b"not a form", "headers": {"Content-Type": "multipart/form-data; boundary=b"}},
        400,
        "invalid_image",
    ),
    "multipart part without a name": (
        {
            "content": b'--b\r\nContent-Disposition: form-data; filename="a.png"\r\n\r\n'
            b"xx\r\n--b--\r\n",
            "headers": {"Content-Type": "multipart/form-data; boundary=b"},
        },
        400,
        "invalid_image",
    ),
    "empty image list": ({"json": {"images": []}}, 400, "no_images"),
    "bad base64": ({"json": {"images": ["not base64!!"]}}, 400, "invalid_image"),
    "base64 of text": ({"json": {"images": ["aGVsbG8="]}}, 400, "invalid_image"),
    "number as image": ({"json": {"images": [5]}}, 400, "invalid_image"),
    "invalid json": (
        {"content": b"{nope", "headers": {"Content-Type": "application/json"}},
        400,
        "invalid_json",
    ),
    "json list": ({"json": [1, 2]}, 400, "invalid_json"),
    "json without images": ({"json": {"imgs": []}}, 400, "invalid_json"),
    "json with both keys": ({"json": {"images": [], "pixels": []}}, 400, "invalid_json"),
    "pixels wrong shape": ({"json": {"pixels": [[[0] * 27] * 28]}}, 400, "invalid_pixels"),
    "pixels ragged": ({"json": {"pixels": [[[0] * 28] * 27 + [[0] * 3]]}}, 400, "invalid_pixels"),
    "pixels over 255": ({"json": {"pixels": [[[300] * 28] * 28]}}, 400, "invalid_pixels"),
    "pixels negative": ({"json": {"pixels": [[[-1] * 28] * 28]}}, 400, "invalid_pixels"),
    "float pixels over 1": ({"json": {"pixels": [[[1.5] * 28] * 28]}}, 400, "invalid_pixels"),
    "pixels as strings": ({"json": {"pixels": [[["a"] * 28] * 28]}}, 400, "invalid_pixels"),
    "plain text type": (
        {"content": b"hello", "headers": {"Content-Type": "text/plain"}},
        415,
        "unsupported_media_type",
    ),
    "form-encoded": (
        {"content": b"a=b", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        415,
        "unsupported_media_type",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_bad_bodies(client, case):
    kwargs, status, code = BAD_BODIES[case]
    assert_error(await client.post("/classify", **kwargs), status, code)
    await assert_still_serves(client)


BAD_PARAMETERS = [
    ("/classify?model=resnet", "unknown_model"),
    ("/classify?model=vae", "invalid_parameter"),
    ("/embed?model=resnet", "unknown_model"),
    ("/embed?model=vae&layer=logits", "invalid_parameter"),
    ("/embed?layer=conv1", "invalid_parameter"),
    ("/classify?top_k=0", "invalid_parameter"),
    ("/classify?top_k=11", "invalid_parameter"),
    ("/classify?invert=maybe", "invalid_parameter"),
    ("/classify?format=gif", "invalid_parameter"),
    ("/reconstruct?scale=0", "invalid_parameter"),
    ("/reconstruct?scale=17", "invalid_parameter"),
    ("/interpolate?steps=1", "invalid_parameter"),
    ("/interpolate?steps=65", "invalid_parameter"),
    ("/interpolate?method=cubic", "invalid_parameter"),
    ("/generate?n=0", "invalid_parameter"),
    ("/generate?n=65", "invalid_parameter"),
    ("/generate?seed=-1", "invalid_parameter"),
    ("/generate?seed=abc", "invalid_parameter"),
]


@pytest.mark.parametrize(("url", "code"), BAD_PARAMETERS)
async def test_bad_parameters(client, url, code):
    body = {"start": GOOD_PIXELS["pixels"][0], "end": GOOD_PIXELS["pixels"][0], **GOOD_PIXELS}
    assert_error(await client.post(url, json=body), 422, code)
    await assert_still_serves(client)


async def test_png_chart_of_too_many_images(client):
    response = await client.post(
        "/classify?format=png", json={"pixels": GOOD_PIXELS["pixels"] * 33}
    )
    assert_error(response, 422, "invalid_parameter")
    await assert_still_serves(client)


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"files": {"start": ("a.png", png(np.zeros((28, 28), np.uint8)))}}, 400, "no_images"),
        ({"json": {"start": GOOD_PIXELS["pixels"][0]}}, 400, "no_images"),
        ({"json": {"start": "???", "end": "???"}}, 400, "invalid_image"),
        (
            {
                "content": png(np.zeros((28, 28), np.uint8)),
                "headers": {"Content-Type": "image/png"},
            },
            415,
            "unsupported_media_type",
        ),
    ],
)
async def test_interpolate_needs_start_and_end(client, kwargs, status, code):
    assert_error(await client.post("/interpolate", **kwargs), status, code)
    await assert_still_serves(client)


async def test_unknown_routes_and_methods(client):
    assert_error(await client.get("/nowhere"), 404, "not_found")
    assert_error(await client.get("/models/resnet"), 404, "not_found")
    response = await client.get("/classify")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
    await assert_still_serves(client)


async def test_body_over_the_upload_limit(limited):
    big = png(np.random.default_rng(0).integers(0, 255, (100, 100), dtype=np.uint8))  # ~10 kB
    response = await limited.post("/classify?model=lenet", files=[("file", ("a.png", big))] * 3)
    assert_error(response, 413, "payload_too_large")
    await assert_still_serves(limited)


async def test_image_over_the_pixel_limit_is_refused_before_decoding(limited):
    for data in (png_header_only(200, 200), png_header_only(100_000, 100_000)):
        response = await limited.post(
            "/classify?model=lenet", content=data, headers={"Content-Type": "image/png"}
        )
        assert_error(response, 413, "image_too_large")
    await assert_still_serves(limited)


@pytest.mark.parametrize("style", ["multipart", "base64", "pixels"])
async def test_too_many_images(limited, style):
    images = np.zeros((4, 28, 28), np.uint8)
    assert_error(
        await limited.post("/classify?model=lenet", **image_request(images, style)),
        413,
        "too_many_images",
    )
    await assert_still_serves(limited)


async def test_too_many_multipart_files_stop_the_parser(limited):
    files = [("file", ("a.png", b"x"))] * 50
    assert_error(await limited.post("/classify?model=lenet", files=files), 413, "too_many_images")
    await assert_still_serves(limited)


async def test_api_key():
    async with serving(make_settings(models=["lenet"], api_key="s3cret")) as client:
        assert_error(await client.post("/classify", json=GOOD_PIXELS), 401, "unauthorized")
        assert_error(await client.get("/models"), 401, "unauthorized")
        wrong = await client.post("/classify", json=GOOD_PIXELS, headers={"X-API-Key": "guess"})
        assert_error(wrong, 401, "unauthorized")
        assert wrong.headers["www-authenticate"] == "Bearer"
        for headers in ({"Authorization": "Bearer s3cret"}, {"X-API-Key": "s3cret"}):
            response = await client.post("/classify?model=lenet", json=GOOD_PIXELS, headers=headers)
            assert response.status_code == 200, response.text
        for open_path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(open_path)).status_code == 200
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert paths["/classify"]["post"]["security"]
        assert "security" not in paths["/healthz"]["get"]


async def test_without_a_key_the_api_asks_for_no_credentials(client):
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert all("security" not in op for path in paths.values() for op in path.values())
    assert (await client.post("/classify?model=lenet", json=GOOD_PIXELS)).status_code == 200


async def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_full_queue_answers_503_with_retry_after():
    settings = make_settings(models=["lenet"], max_queue=1, max_batch_size=1, max_batch_wait_ms=0)
    async with serving(settings) as client:
        batcher = client.app.state.runtime.models["lenet"].batchers["classify"]
        started, release = threading.Event(), threading.Event()
        original = batcher.fn

        def held(inputs):
            started.set()
            release.wait(10)
            return original(inputs)

        batcher.fn = held
        request = {"url": "/classify?model=lenet", "json": GOOD_PIXELS}
        running = asyncio.create_task(client.post(**request))
        await wait_until(started.is_set)
        queued = asyncio.create_task(client.post(**request))
        await wait_until(lambda: batcher.queued_images == 1)
        refused = await client.post(**request)
        assert_error(refused, 503, "overloaded")
        assert refused.headers["retry-after"] == "1"
        release.set()
        assert (await running).status_code == 200
        assert (await queued).status_code == 200
        batcher.fn = original
        await assert_still_serves(client)


async def test_a_failing_model_call_is_a_500_and_the_service_goes_on():
    async with serving(make_settings(models=["lenet"])) as client:
        batcher = client.app.state.runtime.models["lenet"].batchers["classify"]
        original = batcher.fn

        def broken(inputs):
            raise RuntimeError("simulated device failure")

        batcher.fn = broken
        response = await client.post("/classify?model=lenet", json=GOOD_PIXELS)
        assert_error(response, 500, "internal_error")
        assert response.headers["x-instance-id"] == "test-instance"
        batcher.fn = original
        await assert_still_serves(client)
