"""The model repository extension against a live service with its own checkpoint folder:
index, unload and load with `tritonclient`, a new checkpoint swapped in under continuous load,
a tampered one refused while the old model keeps serving."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.live_service import running_service
from tests.v2.checkpoints import TRAINED_AT, copy_checkpoints, favour_class
from tests.v2.conftest import example

API_KEY = "repository-key"
AUTH = {"X-API-Key": API_KEY}
SANDAL = 5


@dataclass(frozen=True)
class Service:
    url: str
    checkpoints: Path
    client: triton.InferenceServerClient


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    folder = copy_checkpoints(tmp_path_factory.mktemp("repository") / "checkpoints")
    env = {"FMNIST_CHECKPOINT_DIR": str(folder), "FMNIST_API_KEY": API_KEY}
    log = folder.parent / "uvicorn.log"
    with running_service(log, env) as live:
        client = triton.InferenceServerClient(live.url.removeprefix("http://"), network_timeout=60)
        yield Service(live.url, folder, client)
        client.close()


def index(service: Service) -> dict[str, dict]:
    return {entry["name"]: entry for entry in service.client.get_model_repository_index(AUTH)}


def test_needs_the_api_key(service: Service) -> None:
    response = httpx.post(f"{service.url}/v2/repository/models/lenet/unload")
    assert response.status_code == 401
    assert "API key" in response.json()["error"]


def test_unload_and_load(service: Service) -> None:
    assert {name: entry["state"] for name, entry in index(service).items()} == {
        "lenet": "READY",
        "mynet": "READY",
        "vae": "READY",
    }
    service.client.unload_model("vae", headers=AUTH)
    assert index(service)["vae"]["state"] == "UNAVAILABLE"
    assert not service.client.is_model_ready("vae-decoder", headers=AUTH)
    reconstruct = httpx.post(
        f"{service.url}/reconstruct",
        content=example("bag.png").read_bytes(),
        headers={**AUTH, "Content-Type": "image/png"},
    )
    assert reconstruct.status_code == 422
    assert "not loaded" in reconstruct.json()["error"]["message"]
    service.client.load_model("vae", headers=AUTH)
    assert index(service)["vae"]["state"] == "READY"
    assert service.client.is_model_ready("vae-decoder", headers=AUTH)


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("resnet/load", b"", 404, "unknown model 'resnet'"),
        ("lenet/load", b'{"parameters": {"config": "{}"}}', 400, "no parameters"),
        ("lenet/load", b"[", 400, "not valid JSON"),
        ("resnet/unload", b"", 404, "not loaded"),
    ],
)
def test_bad_requests(service: Service, path: str, body: bytes, status: int, message: str) -> None:
    response = httpx.post(f"{service.url}/v2/repository/models/{path}", content=body, headers=AUTH)
    assert response.status_code == status
    assert message in response.json()["error"]


class Load:
    """Threads that classify the trouser image without pause through v2 and /classify,
    recording (start, end, status, label, version) of every request."""

    def __init__(self, url: str, threads: int = 3) -> None:
        self.url = url
        self.records: list[tuple[float, float, int, str, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]
        self._image = example("trouser.png").read_bytes()

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self, index: int) -> None:
        with httpx.Client(base_url=self.url, headers=AUTH, timeout=30) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                label, version = "", ""
                if index % 2:
                    response = http.post(
                        "/classify?model=lenet",
                        content=self._image,
                        headers={"Content-Type": "image/png"},
                    )
                    if response.status_code == 200:
                        label = response.json()["predictions"][0]["label"]
                else:
                    response = http.post("/v2/models/lenet/infer", json=self._v2_request())
                    if response.status_code == 200:
                        answer = response.json()
                        label, version = answer["outputs"][0]["data"][0], answer["model_version"]
                self.records.append(
                    (started, time.monotonic(), response.status_code, label, version)
                )

    def _v2_request(self) -> dict:
        data = base64.b64encode(self._image).decode()
        return {
            "inputs": [{"name": "image_files", "shape": [1], "datatype": "BYTES", "data": [data]}],
            "outputs": [{"name": "label"}],
        }


def test_new_checkpoint_swapped_in_under_load(service: Service) -> None:
    old_version = service.client.get_model_metadata("lenet", headers=AUTH)["versions"][0]
    new_sha256 = favour_class(service.checkpoints, "lenet", SANDAL)
    with Load(service.url) as load:
        time.sleep(1.5)
        load_sent = time.monotonic()
        service.client.load_model("lenet", headers=AUTH)
        load_done = time.monotonic()
        time.sleep(1.5)
    records = load.records
    assert [r for r in records if r[2] != 200] == []
    before = [r for r in records if r[1] < load_sent]
    after = [r for r in records if r[0] > load_done]
    assert len(before) >= 3 and len(after) >= 3
    assert {r[3] for r in before} == {"Trouser"}
    assert {r[3] for r in after} == {"Sandal"}
    assert {r[4] for r in before if r[4]} == {old_version}
    assert {r[4] for r in after if r[4]} == {new_sha256[:12]}
    info = httpx.get(f"{service.url}/models/lenet", headers=AUTH).json()
    assert info["sha256"] == new_sha256
    assert (info["version"], info["trained_at"]) == (new_sha256[:12], TRAINED_AT)
    metadata = service.client.get_model_metadata("lenet", headers=AUTH)
    assert metadata["parameters"]["trained_at"] == TRAINED_AT
    assert index(service)["lenet"]["version"] == new_sha256[:12]


def test_tampered_checkpoint_is_refused_and_the_old_one_serves(service: Service) -> None:
    version = service.client.get_model_metadata("mynet", headers=AUTH)["versions"][0]
    graph = service.checkpoints / "mynet.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")
    with pytest.raises(InferenceServerException) as caught:
        service.client.load_model("mynet", headers=AUTH)
    assert caught.value.status() == "400"
    assert "sha256" in caught.value.message()
    assert index(service)["mynet"] == {
        "name": "mynet",
        "version": version,
        "state": "READY",
        "reason": "",
    }
    tensor = triton.InferInput("image_files", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([example("bag.png").read_bytes()], dtype=object))
    result = service.client.infer("mynet", [tensor], headers=AUTH)
    assert result.get_response()["model_version"] == version
    assert result.as_numpy("label")[0] == b"Bag"
