"""A repository load on each backend (in-process, CPU): the new checkpoint's weights answer, a
tampered one is refused. ONNX Runtime verifies the ONNX graph, PyTorch the safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.service.support import make_settings, serving
from tests.v2.checkpoints import copy_checkpoints, favour_class
from tests.v2.conftest import example

pytestmark = pytest.mark.anyio
SANDAL = 5
TAMPERED = {"onnxruntime": "lenet.onnx", "torch": "lenet.safetensors"}


async def label(client: httpx.AsyncClient) -> tuple[str, str]:
    """The v2 label of the trouser image (sent as binary tensor data), and the version."""
    data = example("trouser.png").read_bytes()
    tensor = {
        "name": "image_files",
        "shape": [1],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": len(data) + 4},
    }
    header = json.dumps({"inputs": [tensor], "outputs": [{"name": "label"}]}).encode()
    response = await client.post(
        "/v2/models/lenet/infer",
        content=header + len(data).to_bytes(4, "little") + data,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    answer = response.json()
    return answer["outputs"][0]["data"][0], answer["model_version"]


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
async def test_load_and_refuse(backend: str, tmp_path: Path) -> None:
    folder = copy_checkpoints(tmp_path / "checkpoints")
    settings = make_settings(checkpoint_dir=folder, backend=backend, models=["lenet"])
    async with serving(settings) as client:
        assert (await label(client))[0] == "Trouser"
        new_sha256 = favour_class(folder, "lenet", SANDAL)
        loaded = await client.post("/v2/repository/models/lenet/load")
        assert loaded.json() == {"name": "lenet", "load": True, "version": new_sha256[:12]}
        assert await label(client) == ("Sandal", new_sha256[:12])
        path = folder / TAMPERED[backend]
        path.write_bytes(path.read_bytes()[:-1] + b"\x01")
        refused = await client.post("/v2/repository/models/lenet/load")
        assert refused.status_code == 400
        assert "sha256" in refused.json()["error"]
        assert await label(client) == ("Sandal", new_sha256[:12])
