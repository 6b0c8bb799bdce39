"""GET /models, /models/{name}, /healthz, /readyz, /metrics; the instance header; OpenAPI."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.service.support import CHECKPOINT_DIR, image_request, make_settings, serving

pytestmark = pytest.mark.anyio


async def test_models_lists_every_loaded_model_with_its_card(client):
    response = await client.get("/models")
    assert response.status_code == 200
    models = {m["name"]: m for m in response.json()["models"]}
    assert set(models) == {"lenet", "mynet", "vae"}
    for name, info in models.items():
        card = json.loads((CHECKPOINT_DIR / f"{name}.json").read_text())
        assert info["sha256"] == card["weights"]["sha256"]
        assert info["version"] == card["weights"]["sha256"][:12]
        # The shipped cards (format 1) predate the training date; a retrained one has it.
        assert info["trained_at"] == card["training"].get("finished_at")
        assert info["parameters"] == card["parameters"]
        assert info["device"] == "cpu"
        assert info["kind"] == card["kind"]
        key = "accuracy" if info["kind"] == "classifier" else "loss"
        assert info["test_metrics"][key] == card["metrics"]["test"][key]
    assert models["mynet"]["layers"] == ["penultimate", "logits"]
    assert models["vae"]["layers"] == ["latent"]
    assert models["vae"]["latent_dim"] > 0 and models["vae"]["class_names"] == []
    assert len(models["lenet"]["class_names"]) == 10


async def test_one_model(client):
    response = await client.get("/models/vae")
    assert response.status_code == 200
    assert response.json()["kind"] == "autoencoder"


async def test_health_and_readiness(client):
    health = await client.get("/healthz")
    assert health.json() == {"status": "ok", "instance_id": "test-instance"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "backend": "onnxruntime",
        "device": "cpu",
        "models": ["lenet", "mynet", "vae"],
    }


async def test_not_ready_after_stop():
    async with serving(make_settings(models=["lenet"])) as client:
        assert (await client.get("/readyz")).status_code == 200
        app = client.app
    # The lifespan has ended: the batchers are stopped, so the app is no longer ready.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as after:
        response = await after.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"


async def test_every_response_names_the_instance(client):
    for response in (
        await client.get("/healthz"),
        await client.get("/nowhere"),
        await client.post("/classify", content=b"junk", headers={"Content-Type": "image/png"}),
    ):
        assert response.headers["x-instance-id"] == "test-instance"


async def test_metrics_count_requests_batches_and_queue(client, samples):
    await client.post("/classify?model=lenet", **image_request(samples[0], "pixels"))
    await client.get("/nowhere")
    text = (await client.get("/metrics")).text
    assert 'fmnist_http_requests_total{method="POST",route="/classify",status="200"}' in text
    assert 'fmnist_http_requests_total{method="GET",route="unmatched",status="404"}' in text
    assert (
        'fmnist_http_request_duration_seconds_bucket{le="0.001",method="POST",route="/classify"'
        in text
    )
    assert 'fmnist_batch_size_count{model="lenet",op="classify"}' in text
    assert 'fmnist_inference_seconds_count{model="lenet",op="classify"}' in text
    assert 'fmnist_queue_depth{model="lenet",op="classify"} 0.0' in text


async def test_openapi_describes_every_endpoint_with_errors_and_examples(client):
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    image_routes = ["/classify", "/embed", "/reconstruct", "/interpolate"]
    for path in [*image_routes, "/generate"]:
        operation = paths[path]["post"]
        assert operation["description"]
        responses = operation["responses"]
        assert "image/png" in responses["200"]["content"]
        assert "application/json" in responses["200"]["content"]
        for status in ("401", "422", "503"):
            example = responses[status]["content"]["application/json"]["example"]
            assert set(example["error"]) == {"code", "message"}
    for path in image_routes:
        operation = paths[path]["post"]
        assert {"400", "413", "415"} <= set(operation["responses"])
        assert "multipart/form-data" in operation["requestBody"]["content"]
        assert "application/json" in operation["requestBody"]["content"]
    for path in ("/models", "/models/{name}", "/healthz", "/readyz", "/metrics"):
        assert "get" in paths[path]
    assert "404" in paths["/models/{name}"]["get"]["responses"]
    components = schema["components"]["schemas"]
    assert "examples" in components["ClassifyResponse"]
    assert "examples" in components["ErrorResponse"]
