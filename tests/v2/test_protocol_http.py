"""The v2 routes over plain HTTP (the app in-process, with an API key and a small body limit):
which routes are open, the protocol's error body for auth, size and routing errors, and the
metrics that v2 requests feed."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.service.support import make_settings, serving
from tests.v2.conftest import example

pytestmark = pytest.mark.anyio
KEY = {"X-API-Key": "v2-key"}


@pytest.fixture(scope="module")
async def client(anyio_backend: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(api_key="v2-key", max_upload_bytes=4096, max_images_per_request=2)
    async with serving(settings) as client:
        yield client


def infer_body(*names: str) -> dict:
    files = [base64.b64encode(example(name).read_bytes()).decode() for name in names]
    return {
        "inputs": [
            {"name": "image_files", "shape": [len(files)], "datatype": "BYTES", "data": files}
        ],
        "outputs": [{"name": "label"}],
    }


async def test_health_is_open_the_models_are_not(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    assert (await client.get("/v2/health/ready")).json() == {"ready": True}
    assert (await client.get("/v2")).json()["name"] == "fmnist-service"
    for method, path in [("GET", "/v2/models/lenet"), ("POST", "/v2/models/lenet/infer")]:
        response = await client.request(method, path)
        assert response.status_code == 401
        assert response.json() == {
            "error": "missing API key: send `Authorization: Bearer <key>` or `X-API-Key`"
        }


async def test_json_inference(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v2/models/mynet/infer", json={**infer_body("bag.png"), "id": "a1"}, headers=KEY
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert (answer["id"], answer["model_name"]) == ("a1", "mynet")
    assert answer["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["Bag"]}
    ]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/mynet/infer", b"x" * 5000, 413, "exceeds 4096 bytes"),
        ("/v2/models/mynet/infer", b"{", 400, "not valid JSON"),
        ("/v2/models/mynet/nowhere", b"", 404, "no v2 route POST /v2/models/mynet/nowhere"),
        (
            "/v2/models/vae-decoder/infer",
            b'{"inputs": [{"name": "latent", "shape": [3, 32], "datatype": "FP32", "data": []}]}',
            400,
            "0 elements, its shape needs 96",
        ),
    ],
    ids=["too-large", "bad-json", "no-route", "no-data"],
)
async def test_errors_have_the_protocol_shape(
    client: httpx.AsyncClient, path: str, body: bytes, status: int, message: str
) -> None:
    response = await client.post(path, content=body, headers=KEY)
    assert response.status_code == status
    assert list(response.json()) == ["error"]
    assert message in response.json()["error"]


async def test_the_image_count_limit_applies(client: httpx.AsyncClient) -> None:
    body = infer_body("bag.png", "boot.png", "coat.png")
    response = await client.post("/v2/models/lenet/infer", json=body, headers=KEY)
    assert response.status_code == 413
    assert response.json() == {"error": "3 images in one request; the limit is 2"}


async def test_v2_requests_feed_the_metrics(client: httpx.AsyncClient) -> None:
    body = infer_body("bag.png")
    body["outputs"] = [{"name": "probabilities"}, {"name": "logits"}]
    assert (await client.post("/v2/models/lenet/infer", json=body, headers=KEY)).is_success
    metrics = (await client.get("/metrics")).text
    assert (
        'fmnist_http_requests_total{method="POST",route="/v2/models/{name}/infer",status="200"}'
        in metrics
    )
    assert 'fmnist_batch_size_count{model="lenet",op="forward"}' in metrics
