"""`tritonclient.http.aio` against a live service: concurrent requests, JSON and binary data.
(KServe's clients run in a process of their own: tests/v2/test_kserve_clients.py.)"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import tritonclient.http.aio as triton_aio
from tritonclient.http import InferInput as TritonInput
from tritonclient.http import InferRequestedOutput
from tritonclient.utils import InferenceServerException

from tests.v2.support import rest_classify, text

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
