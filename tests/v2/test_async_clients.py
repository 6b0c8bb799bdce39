"""The asyncio clients against a live service: `tritonclient.http.aio` and KServe's
`InferenceRESTClient` (the KServe Python SDK), concurrent requests, JSON and binary data."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import tritonclient.http.aio as triton_aio
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from tritonclient.http import InferInput as TritonInput
from tritonclient.http import InferRequestedOutput
from tritonclient.utils import InferenceServerException

from tests.v2.support import pixels, rest_classify, text

pytestmark = pytest.mark.anyio


async def test_tritonclient_aio_concurrent_requests(url: str, files: list[bytes]) -> None:
    expected = [p["label"] for p in rest_classify(url, "mynet", files)["predictions"]]
    async with triton_aio.InferenceServerClient(url.removeprefix("http://")) as client:
        assert await client.is_server_ready()
        assert (await client.get_model_metadata("mynet"))["name"] == "mynet"

        async def classify(index: int) -> list[str]:
            tensor = TritonInput("image_files", [1], "BYTES")
            tensor.set_data_from_numpy(np.array([files[index % 4]], dtype=object))
            result = await client.infer("mynet", [tensor], outputs=[InferRequestedOutput("label")])
            return text(result.as_numpy("label"))

        labels = await asyncio.gather(*(classify(i) for i in range(16)))
        assert labels == [[expected[i % 4]] for i in range(16)]
        bad = TritonInput("images", [1, 2, 28, 28], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 2, 28, 28), np.float32))
        with pytest.raises(InferenceServerException) as caught:
            await client.infer("mynet", [bad])
        assert caught.value.status() == "400"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
async def test_kserve_rest_client(url: str, files: list[bytes], binary: bool) -> None:
    expected = rest_classify(url, "lenet", files)["predictions"]
    tensor = InferInput("images", [4, 1, 28, 28], "FP32")
    tensor.set_data_from_numpy(pixels(files), binary_data=binary)
    request = InferRequest(
        "lenet",
        [tensor],
        request_id="kserve-1",
        request_outputs=[
            RequestedOutput("probabilities", {"binary_data": binary}),
            RequestedOutput("label", {"binary_data": binary}),
        ],
    )
    async with InferenceRESTClient(RESTConfig(protocol="v2", timeout=60)) as client:
        assert await client.is_server_live(url)
        assert await client.is_server_ready(url)
        assert await client.is_model_ready(url, "lenet")
        response = await client.infer(url, request, model_name="lenet")
    assert response.id == "kserve-1"
    outputs = {output.name: output for output in response.outputs}
    np.testing.assert_allclose(
        np.asarray(outputs["probabilities"].as_numpy(), dtype=np.float32).reshape(4, 10),
        [p["probabilities"] for p in expected],
        atol=1e-6,
    )
    assert text(np.asarray(outputs["label"].as_numpy())) == [p["label"] for p in expected]
