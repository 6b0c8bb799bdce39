"""The blocking client against a real service: every method, every input type, PNG outputs and
the error paths; the retry logic against `httpx.MockTransport`."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from fmnist_client.client import Client, ImageInput, ServiceError
from PIL import Image

from tests.client.live_server import EXAMPLES, INSTANCE_ID, Server
from tests.live_service import free_port

# Fashion-MNIST test images the shipped LeNet-5 gets right, and their labels.
LABELLED = {
    "trouser.png": "Trouser",
    "bag.png": "Bag",
    "boot.png": "Ankle boot",
    "sneaker.png": "Sneaker",
}


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[Client]:
    with Client(server.url, api_key=server.api_key) as shared:
        yield shared


def decode_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image


def assert_grid(image: Image.Image, columns: int, rows: int, scale: int) -> None:
    """A grid of `columns` x `rows` 28x28 cells enlarged `scale` times, with thin gaps."""
    side = 28 * scale
    for size, cells in ((image.width, columns), (image.height, rows)):
        assert cells * side <= size <= cells * side + 4 * (cells + 1)


def test_classify_paths(client: Client) -> None:
    paths = [EXAMPLES / name for name in LABELLED]
    result = client.classify(paths, model="lenet", top_k=3)
    assert result.model == "lenet"
    assert len(result.class_names) == 10
    assert [p.label for p in result.predictions] == list(LABELLED.values())
    for prediction in result.predictions:
        assert len(prediction.top_k) == 3
        assert prediction.top_k[0].label == prediction.label
        assert sum(prediction.probabilities) == pytest.approx(1.0, abs=1e-4)


def test_calibration_and_the_ood_flag(client: Client) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    images = [EXAMPLES / "bag.png", noise]
    calibrated = client.classify(images, model="lenet")
    plain = client.classify(images, model="lenet", calibrated=False)
    assert calibrated.calibrated and not plain.calibrated
    assert [p.label for p in calibrated.predictions] == [p.label for p in plain.predictions]
    assert calibrated.predictions[0].confidence != plain.predictions[0].confidence
    assert [p.out_of_distribution for p in calibrated.predictions] == [False, True]
    with pytest.raises(ServiceError) as caught:
        client.classify(images, ood="refuse")
    assert (caught.value.status, caught.value.code) == (422, "out_of_distribution")
    assert "image 2 of 2" in caught.value.message


def test_every_input_type_gives_the_same_answer(client: Client) -> None:
    path = EXAMPLES / "boot.png"
    pixels = np.asarray(Image.open(path))
    inputs: list[ImageInput] = [
        str(path),
        path,
        path.read_bytes(),
        Image.open(path),
        pixels,
        pixels.astype(np.float32) / 255,
        pixels.astype(np.int64),
    ]
    answers = [client.classify(image, model="lenet").predictions[0] for image in inputs]
    for answer in answers:
        assert answer.label == "Ankle boot"
        assert answer.probabilities == pytest.approx(answers[0].probabilities, abs=1e-6)


def test_a_batch_array_is_several_images(client: Client) -> None:
    names = list(LABELLED)
    batch = np.stack([np.asarray(Image.open(EXAMPLES / name)) for name in names])
    result = client.classify(batch, model="lenet")
    assert [p.label for p in result.predictions] == list(LABELLED.values())


def test_a_colour_photo_is_inverted_on_request(client: Client) -> None:
    photo = Image.open(EXAMPLES / "boot_on_white.jpg")
    assert photo.size == (224, 224)
    auto = client.classify(photo, model="lenet").predictions[0]
    raw = client.classify(photo, model="lenet", invert="false").predictions[0]
    assert auto.probabilities != pytest.approx(raw.probabilities, abs=1e-3)


def test_embed(client: Client) -> None:
    images = [EXAMPLES / "shirt.png", EXAMPLES / "bag.png"]
    features = client.embed(images)
    assert features.model == "mynet"
    assert features.layer == "penultimate"
    assert len(features.explained_variance_ratio) == 2
    assert len(features.embeddings) == 2
    for embedding in features.embeddings:
        assert len(embedding.vector) == features.dimension
        assert len(embedding.coordinates) == 2
    logits = client.embed(images, model="lenet", layer="logits")
    assert logits.dimension == 10
    latent = client.embed(images, model="vae")
    assert latent.dimension == client.model("vae").latent_dim


def test_reconstruct(client: Client) -> None:
    result = client.reconstruct([EXAMPLES / "coat.png", EXAMPLES / "dress.png"])
    assert result.model == "vae"
    assert len(result.reconstructions) == 2
    for reconstruction in result.reconstructions:
        assert np.asarray(reconstruction.pixels).shape == (28, 28)
        assert reconstruction.mse >= 0 and reconstruction.bce > 0 and reconstruction.kl >= 0


def test_interpolate(client: Client) -> None:
    result = client.interpolate(
        EXAMPLES / "sandal.png", EXAMPLES / "boot.png", steps=5, method="slerp"
    )
    assert (result.method, result.steps) == ("slerp", 5)
    assert len(result.frames) == len(result.latents) == 5
    assert {len(latent) for latent in result.latents} == {client.model("vae").latent_dim}


def test_generate_is_repeatable(client: Client) -> None:
    first = client.generate(n=4, seed=11)
    assert first.seed == 11
    assert len(first.images) == 4
    assert client.generate(n=4, seed=11).images == first.images
    assert client.generate(n=4, seed=12).images != first.images


def test_png_outputs(client: Client) -> None:
    images = [EXAMPLES / "shirt.png", EXAMPLES / "sneaker.png", EXAMPLES / "bag.png"]
    chart = decode_png(client.classify_png(images, model="lenet"))
    assert chart.width > 100 and chart.height > 100
    pca_map = decode_png(client.embed_png(images, model="lenet", layer="logits"))
    assert pca_map.width > 100 and pca_map.height > 100
    assert_grid(decode_png(client.reconstruct_png(images, scale=3)), columns=3, rows=2, scale=3)
    strip = client.interpolate_png(images[0], images[1], steps=6, scale=2)
    assert_grid(decode_png(strip), columns=6, rows=1, scale=2)
    assert_grid(decode_png(client.generate_png(n=9, seed=1, scale=1)), columns=3, rows=3, scale=1)


def test_models(client: Client) -> None:
    models = {info.name: info for info in client.models()}
    assert set(models) == {"lenet", "mynet", "vae"}
    assert models["vae"].kind == "autoencoder"
    mynet = client.model("mynet")
    assert mynet == models["mynet"]
    assert mynet.kind == "classifier"
    assert len(mynet.class_names) == 10
    assert len(mynet.sha256) == 64
    assert 0 < mynet.test_metrics["accuracy"] <= 1


def test_health_and_readiness(client: Client) -> None:
    assert client.health().instance_id == INSTANCE_ID
    ready = client.ready()
    assert ready.device == "cpu"
    assert set(ready.models) == {"lenet", "mynet", "vae"}


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        (lambda c: c.classify(b"not an image"), 400, "invalid_image"),
        (lambda c: c.classify(EXAMPLES / "bag.png", model="resnet"), 422, "unknown_model"),
        (lambda c: c.classify(EXAMPLES / "bag.png", top_k=11), 422, "invalid_parameter"),
        (
            lambda c: c.embed(EXAMPLES / "bag.png", model="vae", layer="logits"),
            422,
            "invalid_parameter",
        ),
        (
            lambda c: c.interpolate(EXAMPLES / "bag.png", EXAMPLES / "boot.png", steps=1),
            422,
            "invalid_parameter",
        ),
        (lambda c: c.generate(n=0), 422, "invalid_parameter"),
        (lambda c: c.model("resnet"), 404, "not_found"),
    ],
    ids=["bad-image", "unknown-model", "top-k", "layer", "steps", "n", "no-such-model"],
)
def test_service_errors(
    client: Client, call: Callable[[Client], object], status: int, code: str
) -> None:
    with pytest.raises(ServiceError) as caught:
        call(client)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert caught.value.message
    assert client.health().status == "ok"


def test_api_key(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FMNIST_API_KEY", raising=False)
    with Client(server.url) as anonymous:
        assert anonymous.health().status == "ok"  # health stays open
        with pytest.raises(ServiceError) as caught:
            anonymous.models()
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    with Client(server.url, api_key=server.api_key, auth_scheme="x-api-key") as keyed:
        assert len(keyed.models()) == 3
    monkeypatch.setenv("FMNIST_API_KEY", server.api_key)
    monkeypatch.setenv("FMNIST_URL", server.url)
    with Client() as from_environment:
        assert len(from_environment.models()) == 3


def test_no_server() -> None:
    with Client(f"http://127.0.0.1:{free_port()}") as client, pytest.raises(ServiceError) as caught:
        client.health()
    assert caught.value.status is None
    assert caught.value.code == "connection_error"


def test_bad_local_inputs(client: Client) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        client.classify(np.full((28, 28), 2.0))
    with pytest.raises(ValueError, match="H x W"):
        client.classify(np.zeros((2, 28, 28, 5), dtype=np.uint8))
    with pytest.raises(TypeError, match="not an image"):
        client.classify([1, 2])  # type: ignore[list-item]
    with pytest.raises(FileNotFoundError):
        client.classify(EXAMPLES / "missing.png")


class Script:
    """A fake service answering with `responses` in turn and recording the requests."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.pop(0)


def overloaded(retry_after: str | None) -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    body = {"error": {"code": "overloaded", "message": "queue is full"}}
    return httpx.Response(503, headers=headers, json=body)


def healthy() -> httpx.Response:
    return httpx.Response(200, json={"status": "ok", "instance_id": "fake"})


def fake_client(handler: Callable[[httpx.Request], httpx.Response], **options: Any) -> Client:
    return Client("http://fake", transport=httpx.MockTransport(handler), **options)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's waits between retries, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr("fmnist_client.client.time.sleep", recorded.append)
    return recorded


def test_503_is_retried_after_retry_after(sleeps: list[float]) -> None:
    script = Script(overloaded("3"), overloaded(None), healthy())
    with fake_client(script, retries=2) as client:
        assert client.health().instance_id == "fake"
    assert len(script.requests) == 3
    assert sleeps == [3.0, 1.0]


def test_retries_are_bounded(sleeps: list[float]) -> None:
    script = Script(overloaded("999"), overloaded("1"))
    with fake_client(script, retries=1) as client, pytest.raises(ServiceError) as caught:
        client.health()
    assert (caught.value.status, caught.value.code) == (503, "overloaded")
    assert len(script.requests) == 2
    assert sleeps == [30.0]  # capped


def test_uploads_are_resent_whole_on_retry(sleeps: list[float]) -> None:
    answer = {"model": "vae", "reconstructions": []}
    script = Script(overloaded("0"), httpx.Response(200, json=answer))
    with fake_client(script) as client:
        client.reconstruct(EXAMPLES / "bag.png")
    image = (EXAMPLES / "bag.png").read_bytes()
    assert [image in request.read() for request in script.requests] == [True, True]


def test_other_errors_are_not_retried(sleeps: list[float]) -> None:
    script = Script(httpx.Response(502, text="<html>Bad Gateway</html>"))
    with fake_client(script) as client, pytest.raises(ServiceError) as caught:
        client.health()
    assert (caught.value.status, caught.value.code) == (502, "http_502")
    assert "Bad Gateway" in caught.value.message
    assert sleeps == []


def test_timeout() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with fake_client(hang, timeout=0.5) as client, pytest.raises(ServiceError) as caught:
        client.health()
    assert (caught.value.status, caught.value.code) == (None, "timeout")


def test_authorization_headers() -> None:
    script = Script(healthy(), healthy())
    with fake_client(script, api_key="k1") as client:
        client.health()
    with fake_client(script, api_key="k2", auth_scheme="x-api-key") as client:
        client.health()
    bearer, header = script.requests
    assert bearer.headers["Authorization"] == "Bearer k1"
    assert header.headers["X-API-Key"] == "k2"
    assert "Authorization" not in header.headers
