"""`tritonclient.http` (Triton's own client) against a live service: health, metadata, inference
in JSON and binary, results equal to /classify and /reconstruct, and protocol errors."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.v2.support import pixels, rest_classify, rest_reconstruct, text


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=60)
    yield client
    client.close()


def files_input(files: list[bytes], binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("image_files", [len(files)], "BYTES")
    values = files if binary else [base64.b64encode(f).decode() for f in files]
    tensor.set_data_from_numpy(np.array(values, dtype=object), binary_data=binary)
    return tensor


def pixels_input(array: np.ndarray, name: str = "images", datatype: str = "FP32"):
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=True)
    return tensor


def wanted(*names: str, binary: bool = True) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name, binary_data=binary) for name in names]


def test_health_and_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("lenet")
    assert client.is_model_ready("vae-decoder")
    assert not client.is_model_ready("resnet")
    metadata = client.get_server_metadata()
    assert {"binary_tensor_data", "model_repository"} <= set(metadata["extensions"])


def test_model_metadata(client: triton.InferenceServerClient, url: str) -> None:
    sha256 = httpx.get(f"{url}/models/mynet").json()["sha256"]
    mynet = client.get_model_metadata("mynet")
    assert mynet["versions"] == [sha256[:12]]
    assert mynet["parameters"]["sha256"] == sha256
    shapes = {t["name"]: (t["datatype"], t["shape"]) for t in mynet["inputs"] + mynet["outputs"]}
    assert shapes == {
        "images": ("FP32", [-1, 1, 28, 28]),
        "image_files": ("BYTES", [-1]),
        "probabilities": ("FP32", [-1, 10]),
        "uncalibrated_probabilities": ("FP32", [-1, 10]),
        "logits": ("FP32", [-1, 10]),
        "penultimate": ("FP32", [-1, 128]),
        "ood_score": ("FP32", [-1]),
        "ood_flag": ("BOOL", [-1]),
        "label": ("BYTES", [-1]),
        "class_id": ("INT64", [-1]),
    }
    trust = httpx.get(f"{url}/models/mynet").json()["trust"]
    assert mynet["parameters"]["temperature"] == trust["temperature"]
    assert mynet["parameters"]["ood_threshold"] == trust["ood_threshold"]
    vae = client.get_model_metadata("vae", model_version=sha256_of(url, "vae")[:12])
    outputs = {t["name"]: t["shape"] for t in vae["outputs"]}
    assert outputs == {
        "latent_mean": [-1, 32],
        "latent_log_variance": [-1, 32],
        "reconstruction": [-1, 1, 28, 28],
        "bce": [-1],
        "kl": [-1],
    }
    decoder = client.get_model_metadata("vae-decoder")
    assert [(t["name"], t["shape"]) for t in decoder["inputs"]] == [("latent", [-1, 32])]
    assert [(t["name"], t["shape"]) for t in decoder["outputs"]] == [("images", [-1, 1, 28, 28])]


def sha256_of(url: str, model: str) -> str:
    return httpx.get(f"{url}/models/{model}").json()["sha256"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_image_files_classify_as_the_rest_endpoint(
    client: triton.InferenceServerClient, url: str, files: list[bytes], binary: bool
) -> None:
    expected = rest_classify(url, "lenet", files)["predictions"]
    result = client.infer(
        "lenet",
        [files_input(files, binary)],
        outputs=wanted("probabilities", "label", "class_id", binary=binary),
    )
    np.testing.assert_allclose(
        result.as_numpy("probabilities"),
        [p["probabilities"] for p in expected],
        rtol=1e-5,
        atol=1e-6,
    )
    assert text(result.as_numpy("label")) == [p["label"] for p in expected]
    assert result.as_numpy("class_id").tolist() == [p["class_id"] for p in expected]
    assert text(result.as_numpy("label")) == ["Trouser", "Bag", "Ankle boot", "Shirt"]


def test_pixel_tensor_gives_every_output(
    client: triton.InferenceServerClient, url: str, files: list[bytes]
) -> None:
    """No outputs named: every output comes back (tritonclient then asks for binary data)."""
    result = client.infer("mynet", [pixels_input(pixels(files))])
    expected = rest_classify(url, "mynet", files)["predictions"]
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), [p["probabilities"] for p in expected], atol=1e-6
    )
    logits = result.as_numpy("logits")
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax, result.as_numpy("uncalibrated_probabilities"), atol=1e-5)
    temperature = httpx.get(f"{url}/models/mynet").json()["trust"]["temperature"]
    calibrated = np.exp(logits / temperature)
    calibrated /= calibrated.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(calibrated, result.as_numpy("probabilities"), atol=1e-5)
    assert result.as_numpy("penultimate").shape == (4, 128)
    assert not result.as_numpy("ood_flag").any()  # four garments
    # N x 28 x 28 is accepted as well as N x 1 x 28 x 28
    flat = client.infer("mynet", [pixels_input(pixels(files)[:, 0])], outputs=wanted("class_id"))
    assert flat.as_numpy("class_id").tolist() == result.as_numpy("class_id").tolist()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_the_ood_flag_is_a_bool_output(
    client: triton.InferenceServerClient, url: str, files: list[bytes], binary: bool
) -> None:
    noise = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    images = np.concatenate([pixels(files), noise])
    result = client.infer(
        "lenet", [pixels_input(images)], outputs=wanted("ood_flag", "ood_score", binary=binary)
    )
    flags, scores = result.as_numpy("ood_flag"), result.as_numpy("ood_score")
    assert flags.dtype == np.bool_
    assert flags.tolist() == [False] * len(files) + [True, True]
    threshold = client.get_model_metadata("lenet")["parameters"]["ood_threshold"]
    assert (flags == (scores > threshold)).all()
    expected = rest_classify(url, "lenet", files)["predictions"]
    np.testing.assert_allclose(scores[: len(files)], [p["ood_score"] for p in expected], rtol=1e-5)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_vae_as_the_reconstruct_endpoint(
    client: triton.InferenceServerClient, url: str, files: list[bytes], binary: bool
) -> None:
    expected = rest_reconstruct(url, files)["reconstructions"]
    result = client.infer(
        "vae",
        [files_input(files, binary=True)],
        outputs=wanted("reconstruction", "bce", "kl", "latent_mean", binary=binary),
    )
    reconstruction = result.as_numpy("reconstruction")
    assert reconstruction.shape == (4, 1, 28, 28)
    as_bytes = np.round(np.clip(reconstruction[:, 0], 0, 1) * 255).astype(np.uint8)
    assert as_bytes.tolist() == [r["pixels"] for r in expected]
    np.testing.assert_allclose(result.as_numpy("bce"), [r["bce"] for r in expected], rtol=1e-5)
    np.testing.assert_allclose(result.as_numpy("kl"), [r["kl"] for r in expected], rtol=1e-5)
    # The decoder model turns the latent means back into the same reconstructions.
    latent = result.as_numpy("latent_mean")
    decoded = client.infer("vae-decoder", [pixels_input(latent, "latent")]).as_numpy("images")
    np.testing.assert_allclose(decoded, reconstruction, atol=1e-5)


def test_version_in_the_path(client: triton.InferenceServerClient, url: str, files: list[bytes]):
    version = sha256_of(url, "lenet")[:12]
    result = client.infer(
        "lenet", [files_input(files[:1], True)], model_version=version, outputs=wanted("label")
    )
    assert text(result.as_numpy("label")) == ["Trouser"]
    assert result.get_response()["model_version"] == version
    with pytest.raises(InferenceServerException) as caught:
        client.infer("lenet", [files_input(files[:1], True)], model_version="0")
    assert caught.value.status() == "404"


@pytest.mark.parametrize(
    ("model", "tensor", "outputs", "status", "message"),
    [
        (
            "lenet",
            lambda f: pixels_input(np.zeros((1, 3, 28, 28), np.float32)),
            (),
            "400",
            "expected [N, 1, 28, 28]",
        ),
        (
            "lenet",
            lambda f: pixels_input(np.zeros((1, 1, 28, 28)), datatype="FP64"),
            (),
            "400",
            "must be FP32, not FP64",
        ),
        (
            "lenet",
            lambda f: pixels_input(np.zeros((1, 28, 28), np.float32), "pixels"),
            (),
            "400",
            "one of: images, image_files",
        ),
        (
            "lenet",
            lambda f: pixels_input(np.full((1, 28, 28), 255, np.float32)),
            (),
            "400",
            "[0, 1]",
        ),
        ("lenet", lambda f: files_input(f[:1], True), ("softmax",), "400", "no output 'softmax'"),
        (
            "lenet",
            lambda f: files_input([b"not an image"], True),
            (),
            "400",
            "not an image Pillow can read",
        ),
        (
            "vae-decoder",
            lambda f: pixels_input(np.zeros((2, 16), np.float32), "latent"),
            (),
            "400",
            "expected [N, 32]",
        ),
        ("resnet", lambda f: files_input(f[:1], True), (), "404", "'resnet' is not loaded"),
        ("lenet", lambda f: files_input(f * 65, True), (), "413", "the limit is 256"),
    ],
    ids=[
        "shape",
        "datatype",
        "input-name",
        "range",
        "output-name",
        "not-an-image",
        "latent-size",
        "unknown-model",
        "too-many",
    ],
)
def test_errors(
    client: triton.InferenceServerClient,
    files: list[bytes],
    model: str,
    tensor,
    outputs: tuple[str, ...],
    status: str,
    message: str,
) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(model, [tensor(files)], outputs=wanted(*outputs) or None)
    assert caught.value.status() == status
    assert message in caught.value.message()
