"""The v2 tensor codec: JSON and binary request bodies in, JSON and binary responses out."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from service.errors import InvalidJSON
from service.v2.tensors import InvalidTensor, Output, encode_response, parse_request


def binary_body(header: dict, *chunks: bytes) -> tuple[bytes, str]:
    text = json.dumps(header).encode()
    return text + b"".join(chunks), str(len(text))


def test_json_input_is_reshaped_row_major() -> None:
    body = {
        "id": "7",
        "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}],
        "outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": True}}],
    }
    request = parse_request(json.dumps(body).encode(), None)
    (tensor,) = request.inputs
    assert request.id == "7"
    assert tensor.data.dtype == np.float32 and not tensor.binary
    assert tensor.data.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert request.outputs == {"a": None, "b": True}


def test_binary_inputs_follow_the_json_in_order() -> None:
    floats = np.arange(4, dtype="<f4")
    files = [b"\x89PNG-one", b"two"]
    packed = b"".join(struct.pack("<I", len(f)) + f for f in files)
    header = {
        "inputs": [
            {
                "name": "x",
                "shape": [4],
                "datatype": "FP32",
                "parameters": {"binary_data_size": floats.nbytes},
            },
            {
                "name": "f",
                "shape": [2],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(packed)},
            },
        ],
        "parameters": {"binary_data_output": True},
    }
    request = parse_request(*binary_body(header, floats.tobytes(), packed))
    assert request.inputs[0].data.tolist() == [0, 1, 2, 3]
    assert list(request.inputs[1].data) == files
    assert request.binary_by_default


@pytest.mark.parametrize(
    ("header", "binary", "message"),
    [
        ({"inputs": []}, b"", "non-empty"),
        (
            {"inputs": [{"name": "x", "shape": [2], "datatype": "FP99", "data": [1, 2]}]},
            b"",
            "unknown datatype",
        ),
        (
            {"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]},
            b"",
            "2 elements, its shape needs 3",
        ),
        (
            {"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]},
            b"",
            "non-negative",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ["a"]}]},
            b"",
            "not an array of FP32",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [2],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": 4},
                    }
                ]
            },
            b"1234",
            "need 8",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": 8},
                    }
                ]
            },
            b"1234",
            "exceeds the body",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
            b"extra",
            "no input claims",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "f",
                        "shape": [1],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 6},
                    }
                ]
            },
            struct.pack("<I", 9) + b"ab",
            "longer than its data",
        ),
    ],
    ids=[
        "no-inputs",
        "datatype",
        "count",
        "negative",
        "not-numbers",
        "short-binary",
        "past-body",
        "unclaimed",
        "bytes-length",
    ],
)
def test_malformed_requests(header: dict, binary: bytes, message: str) -> None:
    with pytest.raises(InvalidTensor, match=message):
        parse_request(*binary_body(header, binary))


def test_bad_json_and_header_length() -> None:
    with pytest.raises(InvalidJSON):
        parse_request(b"{not json", None)
    with pytest.raises(InvalidTensor, match="does not fit"):
        parse_request(b"{}", "99")


def test_response_mixes_json_and_binary_outputs() -> None:
    probabilities = np.array([[0.25, 0.75]], dtype=np.float32)
    labels = np.array([b"Bag"], dtype=object)
    body, length = encode_response(
        {"model_name": "m"},
        [Output("p", "FP32", probabilities, binary=True), Output("label", "BYTES", labels, False)],
    )
    assert length is not None
    header = json.loads(body[:length])
    assert header["outputs"][0] == {
        "name": "p",
        "datatype": "FP32",
        "shape": [1, 2],
        "parameters": {"binary_data_size": 8},
    }
    assert header["outputs"][1]["data"] == ["Bag"]
    assert np.frombuffer(body[length:], "<f4").tolist() == [0.25, 0.75]


def test_json_only_response_has_no_header_length() -> None:
    ids = np.array([3, 1], dtype=np.int64)
    body, length = encode_response({"model_name": "m"}, [Output("c", "INT64", ids, False)])
    assert length is None
    assert json.loads(body)["outputs"][0]["data"] == [3, 1]
