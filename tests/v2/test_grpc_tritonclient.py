"""`tritonclient.grpc` (Triton's own gRPC client) against a live service: health, metadata,
inference in raw and typed contents with the same answers as /classify and /reconstruct and
the REST v2 protocol, streaming, every protocol error with its status code, the gRPC health
service, reflection and the metrics."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from tests.v2.grpc_support import files_input, pixels_input, wanted
from tests.v2.support import pixels, rest_classify, rest_reconstruct, text

INFERENCE = "inference.GRPCInferenceService"


@pytest.fixture(scope="module")
def client(grpc_target: str) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(grpc_target)
    yield client
    client.close()


def test_health_readiness_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("lenet")
    assert client.is_model_ready("vae-decoder")
    assert client.is_model_ready("lenet", model_version=client_version(client, "lenet"))
    assert not client.is_model_ready("lenet", model_version="0")
    assert not client.is_model_ready("resnet")
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "fmnist-service"
    assert "model_repository" in metadata["extensions"]


def client_version(client: triton.InferenceServerClient, model: str) -> str:
    return client.get_model_metadata(model, as_json=True)["versions"][0]


def test_model_metadata_is_the_rest_protocols(
    client: triton.InferenceServerClient, url: str
) -> None:
    for model in ("mynet", "vae", "vae-decoder"):
        rest = httpx.get(f"{url}/v2/models/{model}").json()
        over_grpc = client.get_model_metadata(model, as_json=True)
        assert over_grpc["versions"] == rest["versions"]
        assert over_grpc["platform"] == rest["platform"] == "onnxruntime"
        for side in ("inputs", "outputs"):
            tensors = [
                {**tensor, "shape": [int(d) for d in tensor["shape"]]} for tensor in over_grpc[side]
            ]
            assert tensors == rest[side], (model, side)


def test_image_files_classify_as_the_rest_endpoint(
    client: triton.InferenceServerClient, url: str, files: list[bytes]
) -> None:
    expected = rest_classify(url, "lenet", files)["predictions"]
    result = client.infer(
        "lenet", [files_input(files)], outputs=wanted("probabilities", "label", "class_id")
    )
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), [p["probabilities"] for p in expected], atol=1e-6
    )
    assert text(result.as_numpy("label")) == ["Trouser", "Bag", "Ankle boot", "Shirt"]
    assert text(result.as_numpy("label")) == [p["label"] for p in expected]
    assert result.as_numpy("class_id").tolist() == [p["class_id"] for p in expected]


def test_every_output_equals_the_rest_protocols(
    client: triton.InferenceServerClient, url: str, files: list[bytes]
) -> None:
    """No outputs named: every output comes back, each as REST's v2 gives it for the same
    pixels; and the answer carries the request's id, model and version."""
    images = pixels(files)
    result = client.infer("mynet", [pixels_input(images)], request_id="grpc-1")
    body = {
        "inputs": [
            {
                "name": "images",
                "datatype": "FP32",
                "shape": list(images.shape),
                "data": images.ravel().tolist(),
            }
        ]
    }
    rest = httpx.post(f"{url}/v2/models/mynet/infer", json=body, timeout=30).json()
    response = result.get_response(as_json=True)
    assert response["id"] == "grpc-1"
    assert (response["model_name"], response["model_version"]) == ("mynet", rest["model_version"])
    assert [o["name"] for o in response["outputs"]] == [o["name"] for o in rest["outputs"]]
    for output in rest["outputs"]:
        value = result.as_numpy(output["name"])
        assert list(value.shape) == output["shape"], output["name"]
        if output["datatype"] == "BYTES":
            assert text(value) == output["data"]
        else:
            np.testing.assert_allclose(value.ravel(), output["data"], atol=1e-6)
    assert not result.as_numpy("ood_flag").any()


def test_vae_as_the_reconstruct_endpoint(
    client: triton.InferenceServerClient, url: str, files: list[bytes]
) -> None:
    expected = rest_reconstruct(url, files)["reconstructions"]
    result = client.infer(
        "vae", [files_input(files)], outputs=wanted("reconstruction", "bce", "latent_mean")
    )
    reconstruction = result.as_numpy("reconstruction")
    as_bytes = np.round(np.clip(reconstruction[:, 0], 0, 1) * 255).astype(np.uint8)
    assert as_bytes.tolist() == [r["pixels"] for r in expected]
    np.testing.assert_allclose(result.as_numpy("bce"), [r["bce"] for r in expected], rtol=1e-5)
    latent = result.as_numpy("latent_mean")
    decoded = client.infer("vae-decoder", [pixels_input(latent, "latent")]).as_numpy("images")
    np.testing.assert_allclose(decoded, reconstruction, atol=1e-5)


def test_raw_and_typed_contents_give_the_same_answer(
    client: triton.InferenceServerClient, files: list[bytes]
) -> None:
    """tritonclient sends raw_input_contents; the typed `contents` of the protocol (what
    KServe's client sends for JSON-like data) are read the same. Outputs come back raw."""
    images = pixels(files)
    raw = client.infer("lenet", [pixels_input(images)], outputs=wanted("probabilities"))
    request = service_pb2.ModelInferRequest(model_name="lenet")
    tensor = request.inputs.add(name="images", datatype="FP32", shape=list(images.shape))
    tensor.contents.fp32_contents.extend(images.ravel().tolist())
    request.outputs.add(name="probabilities")
    request.outputs.add(name="label")
    response = client._client_stub.ModelInfer(request)
    assert len(response.raw_output_contents) == 2
    typed = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(4, 10)
    np.testing.assert_allclose(typed, raw.as_numpy("probabilities"), atol=1e-7)
    typed_files = service_pb2.ModelInferRequest(model_name="lenet")
    files_tensor = typed_files.inputs.add(name="image_files", datatype="BYTES", shape=[4])
    files_tensor.contents.bytes_contents.extend(files)
    typed_files.outputs.add(name="class_id")
    answer = client._client_stub.ModelInfer(typed_files)
    class_ids = np.frombuffer(answer.raw_output_contents[0], "<i8")
    assert class_ids.tolist() == raw.as_numpy("probabilities").argmax(axis=1).tolist()


def test_streaming_answers_every_request_with_its_id(
    client: triton.InferenceServerClient, files: list[bytes]
) -> None:
    answers: list[tuple[str, object]] = []

    def collect(result: triton.InferResult | None, error: Exception | None) -> None:
        if error is not None:
            answers.append(("error", error))
        else:
            answers.append((result.get_response().id, text(result.as_numpy("label"))))

    client.start_stream(callback=collect)
    for index, data in enumerate(files):
        client.async_stream_infer(
            "mynet", [files_input([data])], request_id=str(index), outputs=wanted("label")
        )
    bad = pixels_input(np.zeros((1, 2, 28, 28), np.float32))
    client.async_stream_infer("mynet", [bad], request_id="bad")
    client.stop_stream()  # waits for the answers
    labels = dict(answer for answer in answers if answer[0] != "error")
    assert labels == {"0": ["Trouser"], "1": ["Bag"], "2": ["Ankle boot"], "3": ["Shirt"]}
    errors = [answer[1] for answer in answers if answer[0] == "error"]
    assert len(errors) == 1 and "expected [N, 1, 28, 28]" in str(errors[0])


@pytest.mark.parametrize(
    ("model", "tensor", "outputs", "code", "message"),
    [
        (
            "lenet",
            lambda f: pixels_input(np.zeros((1, 3, 28, 28), np.float32)),
            (),
            grpc.StatusCode.INVALID_ARGUMENT,
            "expected [N, 1, 28, 28]",
        ),
        (
            "lenet",
            lambda f: pixels_input(np.zeros((1, 1, 28, 28)), datatype="FP64"),
            (),
            grpc.StatusCode.INVALID_ARGUMENT,
            "must be FP32, not FP64",
        ),
        (
            "lenet",
            lambda f: pixels_input(np.zeros((1, 28, 28), np.float32), "pixels"),
            (),
            grpc.StatusCode.INVALID_ARGUMENT,
            "one of: images, image_files",
        ),
        (
            "lenet",
            lambda f: pixels_input(np.full((1, 28, 28), 255, np.float32)),
            (),
            grpc.StatusCode.INVALID_ARGUMENT,
            "[0, 1]",
        ),
        (
            "lenet",
            lambda f: files_input(f[:1]),
            ("softmax",),
            grpc.StatusCode.INVALID_ARGUMENT,
            "no output 'softmax'",
        ),
        (
            "lenet",
            lambda f: files_input([b"not an image"]),
            (),
            grpc.StatusCode.INVALID_ARGUMENT,
            "not an image Pillow can read",
        ),
        (
            "vae-decoder",
            lambda f: pixels_input(np.zeros((2, 16), np.float32), "latent"),
            (),
            grpc.StatusCode.INVALID_ARGUMENT,
            "expected [N, 32]",
        ),
        (
            "resnet",
            lambda f: files_input(f[:1]),
            (),
            grpc.StatusCode.NOT_FOUND,
            "'resnet' is not loaded",
        ),
        (
            "lenet",
            lambda f: files_input(f * 65),
            (),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "the limit is 256",
        ),
        (
            "lenet",
            lambda f: files_input([bytes(11 * 2**20)]),
            (),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "larger than max",  # gRPC's own check of FMNIST_MAX_UPLOAD_BYTES
        ),
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
        "too-many-images",
        "message-size",
    ],
)
def test_errors(
    client: triton.InferenceServerClient,
    files: list[bytes],
    model: str,
    tensor,
    outputs: tuple[str, ...],
    code: grpc.StatusCode,
    message: str,
) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(model, [tensor(files)], outputs=wanted(*outputs) or None)
    assert caught.value.status() == str(code)
    assert message in caught.value.message()


def test_raw_contents_that_do_not_fit_are_refused(client: triton.InferenceServerClient) -> None:
    request = service_pb2.ModelInferRequest(model_name="lenet")
    request.inputs.add(name="images", datatype="FP32", shape=[1, 28, 28])
    request.raw_input_contents.append(bytes(100))
    with pytest.raises(grpc.RpcError) as caught:
        client._client_stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "100 bytes of binary data" in caught.value.details()


def test_health_service(grpc_target: str) -> None:
    with grpc.insecure_channel(grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", INFERENCE):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_describes_the_service(grpc_target: str) -> None:
    """What grpcurl and Postman do: the service's definition, learnt from the server."""
    with grpc.insecure_channel(grpc_target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert {INFERENCE, "grpc.health.v1.Health"} <= set(database.get_services())
        service = descriptor_pool.DescriptorPool(database).FindServiceByName(INFERENCE)
        methods = {method.name for method in service.methods}
    assert {"ServerLive", "ModelMetadata", "ModelInfer", "RepositoryModelLoad"} <= methods
    assert (
        service.methods_by_name["ModelInfer"].input_type.fields_by_name["raw_input_contents"].number
        == service_pb2.ModelInferRequest.RAW_INPUT_CONTENTS_FIELD_NUMBER
    )


def test_metrics_count_grpc_calls_by_method_and_code(
    client: triton.InferenceServerClient, url: str, files: list[bytes]
) -> None:
    def count(method: str, code: str) -> float:
        prefix = f'fmnist_grpc_requests_total{{code="{code}",method="{method}"}} '
        lines = httpx.get(f"{url}/metrics").text.splitlines()
        return next((float(line.split()[-1]) for line in lines if line.startswith(prefix)), 0.0)

    ok, bad = count("ModelInfer", "OK"), count("ModelInfer", "NOT_FOUND")
    client.infer("lenet", [files_input(files[:1])])
    with pytest.raises(InferenceServerException):
        client.infer("resnet", [files_input(files[:1])])
    assert count("ModelInfer", "OK") == ok + 1
    assert count("ModelInfer", "NOT_FOUND") == bad + 1
