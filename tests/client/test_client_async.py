"""The asynchronous client: every method against the real service, concurrency, errors and
retries. Request building and parsing are shared with `Client` (see test_client_sync.py)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from fmnist_client.client import AsyncClient, ServiceError
from PIL import Image

from tests.client.live_server import EXAMPLES, Server
from tests.live_service import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(server: Server) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url, api_key=server.api_key) as opened:
        yield opened


async def test_every_method(client: AsyncClient) -> None:
    bag, boot = EXAMPLES / "bag.png", EXAMPLES / "boot.png"
    classified = await client.classify([bag, boot.read_bytes()], model="lenet", top_k=2)
    assert [p.label for p in classified.predictions] == ["Bag", "Ankle boot"]
    assert (await client.embed(Image.open(bag), model="lenet")).dimension > 0
    assert len((await client.reconstruct(bag)).reconstructions) == 1
    assert len((await client.interpolate(bag, boot, steps=3)).frames) == 3
    assert (await client.generate(n=2, seed=5)).seed == 5
    assert {m.name for m in await client.models()} == {"lenet", "mynet", "vae"}
    assert (await client.model("lenet")).kind == "classifier"
    assert (await client.health()).status == "ok"
    assert (await client.ready()).status == "ready"


async def test_png(client: AsyncClient) -> None:
    for png in (
        await client.classify_png(EXAMPLES / "coat.png"),
        await client.embed_png(EXAMPLES / "coat.png"),
        await client.reconstruct_png(EXAMPLES / "coat.png"),
        await client.interpolate_png(EXAMPLES / "coat.png", EXAMPLES / "dress.png", steps=4),
        await client.generate_png(n=4, seed=2),
    ):
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG"
        assert image.width >= 56 and image.height >= 56


async def test_concurrent_requests(client: AsyncClient) -> None:
    names = ["trouser.png", "bag.png", "boot.png", "sneaker.png"] * 4
    labels: dict[int, str] = {}

    async def classify(index: int) -> None:
        result = await client.classify(EXAMPLES / names[index], model="lenet")
        labels[index] = result.predictions[0].label

    async with anyio.create_task_group() as group:
        for index in range(len(names)):
            group.start_soon(classify, index)
    assert [labels[i] for i in range(len(names))] == ["Trouser", "Bag", "Ankle boot", "Sneaker"] * 4


async def test_service_error(client: AsyncClient) -> None:
    with pytest.raises(ServiceError) as caught:
        await client.embed(EXAMPLES / "bag.png", model="resnet")
    assert (caught.value.status, caught.value.code) == (422, "unknown_model")


async def test_no_server() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(ServiceError) as caught:
            await client.ready()
    assert (caught.value.status, caught.value.code) == (None, "connection_error")


async def test_503_is_retried_after_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    monkeypatch.setattr("fmnist_client.client.anyio.sleep", sleep)
    answers = [
        httpx.Response(
            503,
            headers={"Retry-After": "2"},
            json={"error": {"code": "not_ready", "message": "starting"}},
        ),
        httpx.Response(
            200,
            json={"status": "ready", "backend": "onnxruntime", "device": "cpu", "models": ["vae"]},
        ),
    ]

    async def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    async with AsyncClient("http://fake", transport=httpx.MockTransport(handler)) as client:
        assert (await client.ready()).models == ["vae"]
    assert sleeps == [2.0]
    assert answers == []
