"""The limits HTTP has, over gRPC, on live services: the API key as metadata, the service's
deadline and the client's, and the repository extension (index, unload, load) with
tritonclient.grpc."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.live_service import LiveService, free_port, running_service
from tests.v2.checkpoints import copy_checkpoints
from tests.v2.grpc_support import pixels_input

API_KEY = "grpc-key"
BATCH_WAIT_MS = 2000  # a lone request waits this long for company: slower than the deadlines
DEADLINE_S = 0.5


def live(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[LiveService, str]]:
    port = free_port()
    with running_service(tmp_path / "uvicorn.log", {**env, "FMNIST_GRPC_PORT": str(port)}) as svc:
        yield svc, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveService, str]]:
    """A service with an API key and a checkpoint folder of its own."""
    folder = copy_checkpoints(tmp_path_factory.mktemp("grpc-keyed") / "checkpoints")
    env = {"FMNIST_API_KEY": API_KEY, "FMNIST_CHECKPOINT_DIR": str(folder)}
    yield from live(folder.parent, env)


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveService, str]]:
    env = {
        "FMNIST_MODELS": "lenet",
        "FMNIST_MAX_BATCH_WAIT_MS": str(BATCH_WAIT_MS),
        "FMNIST_REQUEST_DEADLINE_S": str(DEADLINE_S),
    }
    yield from live(tmp_path_factory.mktemp("grpc-slow"), env)


def one_image() -> triton.InferInput:
    return pixels_input(np.zeros((1, 1, 28, 28), np.float32))


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (None, "missing API key"),
        ({"x-api-key": "wrong"}, "invalid API key"),
        ({"authorization": "Bearer wrong"}, "invalid API key"),
        ({"authorization": f"Basic {API_KEY}"}, "missing API key"),
    ],
    ids=["none", "wrong-x-api-key", "wrong-bearer", "not-bearer"],
)
def test_protected_calls_need_the_api_key(keyed, headers, message: str) -> None:
    _, target = keyed
    client = triton.InferenceServerClient(target)
    calls = [
        lambda: client.infer("lenet", [one_image()], headers=headers),
        lambda: client.get_model_metadata("lenet", headers=headers),
        lambda: client.is_model_ready("lenet", headers=headers),
        lambda: client.get_model_repository_index(headers=headers),
        lambda: client.unload_model("vae", headers=headers),
    ]
    for call in calls:
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == str(grpc.StatusCode.UNAUTHENTICATED)
        assert message in caught.value.message()
    # Liveness, readiness and server metadata stay open, like their REST routes.
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata().name == "fmnist-service"


@pytest.mark.parametrize(
    "headers", [{"x-api-key": API_KEY}, {"authorization": f"Bearer {API_KEY}"}], ids=str
)
def test_the_key_either_way(keyed, headers: dict[str, str]) -> None:
    _, target = keyed
    client = triton.InferenceServerClient(target)
    result = client.infer("lenet", [one_image()], headers=headers)
    assert result.as_numpy("label").shape == (1,)


def test_repository_unload_and_load(keyed) -> None:
    service, target = keyed
    auth = {"x-api-key": API_KEY}
    client = triton.InferenceServerClient(target)

    def states() -> dict[str, str]:
        index = client.get_model_repository_index(headers=auth, as_json=True)
        return {model["name"]: model["state"] for model in index["models"]}

    assert states() == {"lenet": "READY", "mynet": "READY", "vae": "READY"}
    client.unload_model("vae", headers=auth)
    assert states()["vae"] == "UNAVAILABLE"
    assert not client.is_model_ready("vae-decoder", headers=auth)
    # The REST side of the same process sees it too: one runtime behind both protocols.
    rest = httpx.post(f"{service.url}/v2/repository/index", headers=auth).json()
    assert {e["name"]: e["state"] for e in rest}["vae"] == "UNAVAILABLE"
    client.load_model("vae", headers=auth)
    assert states()["vae"] == "READY"
    assert client.is_model_ready("vae-decoder", headers=auth)
    with pytest.raises(InferenceServerException) as caught:
        client.load_model("vae", headers=auth, config='{"max_batch_size": 8}')
    assert caught.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert "load takes no parameters" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.unload_model("resnet", headers=auth)
    assert caught.value.status() == str(grpc.StatusCode.NOT_FOUND)


def test_the_services_deadline(slow) -> None:
    _, target = slow
    client = triton.InferenceServerClient(target)
    started = time.monotonic()
    with pytest.raises(InferenceServerException) as caught:
        client.infer("lenet", [one_image()])
    took = time.monotonic() - started
    assert caught.value.status() == str(grpc.StatusCode.DEADLINE_EXCEEDED)
    assert "the service's 0.5 s deadline" in caught.value.message()
    assert DEADLINE_S <= took < BATCH_WAIT_MS / 1000, took


def test_the_clients_deadline_drops_the_work(slow) -> None:
    """The client gives up after 0.2 s; the server cancels the call's work there and then, so
    its image is dropped when its batch's turn comes, before any inference."""
    service, target = slow

    def metric(name: str) -> float:
        lines = httpx.get(f"{service.url}/metrics").text.splitlines()
        return next(float(line.split()[-1]) for line in lines if line.startswith(name + " "))

    batches = 'fmnist_batch_size_count{model="lenet",op="forward"}'
    before = metric(batches)
    client = triton.InferenceServerClient(target)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("lenet", [one_image()], client_timeout=0.2)
    assert caught.value.status() == str(grpc.StatusCode.DEADLINE_EXCEEDED)
    time.sleep(BATCH_WAIT_MS / 1000 + 0.5)  # past the batch's wait: its turn has come
    assert metric('fmnist_queue_depth{model="lenet",op="forward"}') == 0
    assert metric(batches) == before  # no batch ran for it
    assert metric('fmnist_grpc_requests_total{code="DEADLINE_EXCEEDED",method="ModelInfer"}') >= 1
