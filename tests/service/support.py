"""Helpers shared by the service tests: settings, a served app, images as files, and requests
in each input style.

The checkpoint folder is one setting: FMNIST_CHECKPOINT_DIR if set, else the shipped
`checkpoints/`.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
from PIL import Image

from service.app import create_app
from service.settings import Settings
from tests.live_service import CHECKPOINT_DIR

STYLES = ("multipart", "raw", "base64", "pixels")


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "checkpoint_dir": CHECKPOINT_DIR,
        "device": "cpu",
        "instance_id": "test-instance",
        "api_key": None,
    }
    return Settings(**(values | overrides))


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to a fresh app whose lifespan (model loading) has run.
    The app is reachable as `client.app` for tests that look inside."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def png(pixels: np.ndarray, **save: Any) -> bytes:
    """`pixels` as an image file: PNG unless `format=` says otherwise."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=save.pop("format", "PNG"), **save)
    return buffer.getvalue()


def decode_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


def b64png(data: str) -> np.ndarray:
    return np.asarray(decode_png(base64.b64decode(data)))


def image_request(images: np.ndarray, style: str) -> dict[str, Any]:
    """httpx keyword arguments sending uint8 `images` (N x H x W) in the given input style."""
    if style == "multipart":
        files = [("file", (f"{i}.png", png(image), "image/png")) for i, image in enumerate(images)]
        return {"files": files}
    if style == "raw":
        assert len(images) == 1, "a raw body carries one image"
        return {"content": png(images[0]), "headers": {"Content-Type": "image/png"}}
    if style == "base64":
        return {"json": {"images": [base64.b64encode(png(image)).decode() for image in images]}}
    if style == "pixels":
        return {"json": {"pixels": images.tolist()}}
    raise ValueError(style)


def with_accept(kwargs: dict[str, Any], accept: str) -> dict[str, Any]:
    """`kwargs` from `image_request` plus an Accept header, keeping any headers it sets."""
    return {**kwargs, "headers": {"Accept": accept, **kwargs.get("headers", {})}}


def post_scope(path: str, query: bytes, content_type: bytes, length: int | None = None) -> dict:
    """The ASGI scope uvicorn gives a POST, for tests that drive the app at the ASGI level
    (a client that disconnects, a handler the server cancels)."""
    headers = [(b"content-type", content_type), (b"host", b"test")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("test", 80),
        "state": {},
    }


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    """`response` is the service's error `status` with `code` in the one error shape; returns
    the error (code and message)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]
