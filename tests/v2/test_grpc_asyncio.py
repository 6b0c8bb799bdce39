"""`tritonclient.grpc.aio` against a live service: concurrent calls on one channel, all
answered as /classify answers, and an error's status code."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
from tritonclient.utils import InferenceServerException

from tests.v2.grpc_support import files_input, pixels_input, wanted
from tests.v2.support import rest_classify, text

pytestmark = pytest.mark.anyio


async def test_concurrent_calls(grpc_target: str, url: str, files: list[bytes]) -> None:
    expected = [p["label"] for p in rest_classify(url, "mynet", files)["predictions"]]
    async with triton_aio.InferenceServerClient(grpc_target) as client:
        assert await client.is_server_ready()
        assert (await client.get_model_metadata("mynet", as_json=True))["name"] == "mynet"

        async def classify(index: int) -> list[str]:
            tensor = files_input([files[index % 4]])
            result = await client.infer("mynet", [tensor], outputs=wanted("label"))
            return text(result.as_numpy("label"))

        labels = await asyncio.gather(*(classify(i) for i in range(32)))
        assert labels == [[expected[i % 4]] for i in range(32)]
        with pytest.raises(InferenceServerException) as caught:
            await client.infer("mynet", [pixels_input(np.zeros((1, 2, 28, 28), np.float32))])
        assert caught.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
