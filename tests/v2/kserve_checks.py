"""KServe's Python SDK against a live service: its REST client (`InferenceRESTClient`) and its
gRPC client (`InferenceGRPCClient`), and its `grpc_predict_v2.proto` on the wire.

The SDK registers the protocol's messages (package `inference`) in protobuf's process-wide
registry, as tritonclient.grpc does, and no process can hold both. So this module is not
collected with the others (its name does not start with `test_`): tests/v2/test_kserve_clients.py
runs it in a pytest process of its own (`python -m pytest tests/v2/kserve_checks.py`).
"""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pb2
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.grpc import grpc_predict_v2_pb2 as kserve_pb2
from kserve.protocol.infer_type import RequestedOutput

from tests.v2.grpc_descriptors import differences, fields, methods, service_proto
from tests.v2.support import pixels, rest_classify, text

pytestmark = pytest.mark.anyio


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


def lenet_request(files: list[bytes], binary: bool) -> InferRequest:
    tensor = InferInput("images", [len(files), 1, 28, 28], "FP32")
    tensor.set_data_from_numpy(pixels(files), binary_data=binary)
    outputs = [RequestedOutput("probabilities"), RequestedOutput("label")]
    return InferRequest("lenet", [tensor], request_id="kserve-grpc", request_outputs=outputs)


@pytest.mark.parametrize("binary", [True, False], ids=["raw", "contents"])
async def test_kserve_grpc_client(
    grpc_target: str, url: str, files: list[bytes], binary: bool
) -> None:
    """`binary_data` sends the pixels as raw_input_contents, else as typed contents."""
    expected = rest_classify(url, "lenet", files)["predictions"]
    async with InferenceGRPCClient(grpc_target, timeout=60, retries=0) as client:
        assert await client.is_server_live()
        assert await client.is_server_ready()
        assert await client.is_model_ready("lenet")
        assert not await client.is_model_ready("resnet")
        response = await client.infer(lenet_request(files, binary))
    assert response.id == "kserve-grpc"
    assert response.model_name == "lenet"
    outputs = {output.name: output for output in response.outputs}
    np.testing.assert_allclose(
        np.asarray(outputs["probabilities"].as_numpy(), dtype=np.float32).reshape(4, 10),
        [p["probabilities"] for p in expected],
        atol=1e-6,
    )
    assert text(np.asarray(outputs["label"].as_numpy())) == [p["label"] for p in expected]


async def test_kserve_grpc_client_errors(grpc_target: str, files: list[bytes]) -> None:
    async with InferenceGRPCClient(grpc_target, timeout=60, retries=0) as client:
        request = lenet_request(files, binary=True)
        request.model_name = "resnet"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.infer(request)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        bad = InferInput("images", [1, 2, 28, 28], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 2, 28, 28), np.float32), binary_data=True)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.infer(InferRequest("lenet", [bad]))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "expected [N, 1, 28, 28]" in caught.value.details()


async def test_kserve_repository_calls(grpc_target: str) -> None:
    """KServe's repository messages put the model name where Triton's put the repository's:
    the service reads either."""
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        load = channel.unary_unary(
            "/inference.GRPCInferenceService/RepositoryModelLoad",
            request_serializer=kserve_pb2.RepositoryModelLoadRequest.SerializeToString,
            response_deserializer=kserve_pb2.RepositoryModelLoadResponse.FromString,
        )
        answer = await load(kserve_pb2.RepositoryModelLoadRequest(model_name="lenet"), timeout=60)
    assert (answer.model_name, answer.isLoaded) == ("lenet", True)


def test_the_proto_is_kserves_on_the_wire(tmp_path: Path) -> None:
    ours = service_proto(tmp_path)
    kserve = descriptor_pb2.FileDescriptorProto()
    kserve_pb2.DESCRIPTOR.CopyToProto(kserve)
    assert differences(ours, kserve, {message for message, _ in fields(ours)}) == []
    assert set(methods(kserve)) <= set(methods(ours))
