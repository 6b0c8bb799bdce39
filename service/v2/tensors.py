"""Tensors of the Open Inference Protocol v2 (REST), with Triton's binary tensor data extension.

A request body is a JSON document, optionally followed by the raw bytes of some input tensors;
the `Inference-Header-Content-Length` header then says where the JSON ends, and each binary input
names its size in `parameters.binary_data_size`, in the order of `inputs`. Responses are built
the same way: outputs asked for with `binary_data` (per output) or `binary_data_output` (for all)
follow the JSON as raw bytes.

Numbers travel little-endian, row-major. BYTES elements travel in binary as a 4-byte
little-endian length and the bytes; in JSON as strings. This module knows nothing about models:
it turns bodies into named numpy arrays and back.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.errors import ServiceError
from service.jsonbody import json_object

HEADER_LENGTH = "inference-header-content-length"
MAX_DIMENSIONS = 32  # numpy's limit is 64; no model here takes more than 4
MAX_DIMENSION = 2**63 - 1  # shapes are int64 in the protocol

DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(bool),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}


class InvalidTensor(ServiceError):
    """A request tensor that cannot be read, or does not fit what the model takes."""

    status, code = 400, "invalid_tensor"


@dataclass(frozen=True)
class Tensor:
    """A request input: `data` has `shape`; BYTES data is an object array of `bytes` (the
    UTF-8 of JSON strings when not `binary`)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: dict[str, bool | None]
    """Requested output names -> binary or not (None: as `binary_data_output` says)."""
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def binary_by_default(self) -> bool:
        return bool(self.parameters.get("binary_data_output", False))


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """The body of `POST .../infer`; raises `InvalidJSON` / `InvalidTensor`."""
    if header_length is None:
        header, binary = body, b""
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise InvalidTensor(
                f"Inference-Header-Content-Length {header_length!r} does not fit a body of "
                f"{len(body)} bytes"
            )
        header, binary = body[: int(header_length)], body[int(header_length) :]
    document = json_object(header, "the inference request")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidTensor('the inference request needs a non-empty "inputs" list')
    inputs, offset = [], 0
    for raw in raw_inputs:
        tensor, used = _read_input(raw, binary, offset)
        inputs.append(tensor)
        offset += used
    if offset != len(binary):
        raise InvalidTensor(
            f"{len(binary) - offset} bytes of binary data follow the JSON that no input claims"
        )
    parameters = _parameters(document, "the request")
    if not isinstance(parameters.get("binary_data_output", False), bool):
        raise InvalidTensor("binary_data_output must be true or false")
    return InferRequest(
        id=_optional_str(document.get("id"), "id"),
        inputs=inputs,
        outputs=_read_outputs(document.get("outputs", [])),
        parameters=parameters,
    )


def _read_input(raw: object, binary: bytes, offset: int) -> tuple[Tensor, int]:
    """One entry of `inputs` -> the tensor and how many binary bytes it took."""
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise InvalidTensor('every input needs a "name", "shape", "datatype" and data')
    name, datatype, shape = raw["name"], raw.get("datatype"), raw.get("shape")
    count = element_count(name, datatype, shape)
    size = _parameters(raw, f"input {name!r}").get("binary_data_size")
    if size is not None:
        if (
            not isinstance(size, int)
            or isinstance(size, bool)
            or not 0 <= size <= len(binary) - offset
        ):
            raise InvalidTensor(f"input {name!r}: binary_data_size {size!r} exceeds the body")
        flat = from_binary(binary[offset : offset + size], datatype, count, name)
    else:
        if "data" not in raw:
            raise InvalidTensor(f"input {name!r}: no data and no binary_data_size")
        flat = _from_json(raw["data"], datatype, count, name)
    return shaped(name, datatype, shape, flat, binary=size is not None), size or 0


def element_count(name: str, datatype: object, shape: object) -> int:
    """The number of elements of input `name`, once its datatype and shape (a list) are
    checked."""
    if not isinstance(datatype, str) or datatype not in DTYPES:  # a list or object: unhashable
        raise InvalidTensor(f"input {name!r}: unknown datatype {datatype!r}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIMENSION for d in shape
    ):
        raise InvalidTensor(f"input {name!r}: shape must be a list of non-negative int64 integers")
    if len(shape) > MAX_DIMENSIONS:
        raise InvalidTensor(f"input {name!r}: more than {MAX_DIMENSIONS} dimensions")
    return math.prod(shape)  # a Python int: no overflow, whatever the shape claims


def shaped(
    name: str, datatype: str, shape: Sequence[int], flat: np.ndarray, binary: bool
) -> Tensor:
    """The input tensor of `flat` elements (as many as `shape` needs) laid out in `shape`."""
    try:
        data = flat.reshape(shape)
    except ValueError:  # an empty tensor whose other dimensions are too big for numpy
        raise InvalidTensor(f"input {name!r}: shape {list(shape)} is too large") from None
    return Tensor(name, datatype, tuple(shape), data, binary)


def from_binary(data: bytes, datatype: str, count: int, name: str) -> np.ndarray:
    if datatype == "BYTES":
        elements, offset = [], 0
        while offset < len(data):
            if offset + 4 > len(data):
                raise InvalidTensor(f"input {name!r}: truncated BYTES element length")
            (length,) = struct.unpack_from("<I", data, offset)
            offset += 4
            if offset + length > len(data):
                raise InvalidTensor(f"input {name!r}: BYTES element longer than its data")
            elements.append(data[offset : offset + length])
            offset += length
        flat = np.empty(len(elements), dtype=object)
        flat[:] = elements
    else:
        dtype = DTYPES[datatype]
        if len(data) != count * dtype.itemsize:
            raise InvalidTensor(
                f"input {name!r}: {len(data)} bytes of binary data, but its shape and "
                f"datatype need {count * dtype.itemsize}"
            )
        flat = np.frombuffer(data, dtype=dtype)
    if len(flat) != count:
        raise InvalidTensor(f"input {name!r}: {len(flat)} elements, its shape needs {count}")
    return flat


def _from_json(data: object, datatype: str, count: int, name: str) -> np.ndarray:
    if datatype == "BYTES":
        flat_list = _flatten(data)
        if not all(isinstance(item, str) for item in flat_list):
            raise InvalidTensor(f"input {name!r}: BYTES data must be strings in JSON")
        flat = np.empty(len(flat_list), dtype=object)
        flat[:] = [item.encode() for item in flat_list]
    else:
        try:
            flat = np.asarray(data, dtype=DTYPES[datatype]).reshape(-1)
        except (TypeError, ValueError, OverflowError):  # e.g. -1 or 2**70 as UINT8
            raise InvalidTensor(f"input {name!r}: data is not an array of {datatype}") from None
    if len(flat) != count:
        raise InvalidTensor(f"input {name!r}: {len(flat)} elements, its shape needs {count}")
    return flat


def _flatten(data: object) -> list[object]:
    if not isinstance(data, list):
        return [data]
    return [item for part in data for item in _flatten(part)]


def _read_outputs(raw: object) -> dict[str, bool | None]:
    if not isinstance(raw, list):
        raise InvalidTensor('"outputs" must be a list')
    outputs: dict[str, bool | None] = {}
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InvalidTensor('every requested output needs a "name"')
        binary = _parameters(entry, f"output {entry['name']!r}").get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise InvalidTensor(f"output {entry['name']!r}: binary_data must be true or false")
        outputs[entry["name"]] = binary
    return outputs


def _parameters(document: dict, what: str) -> dict[str, Any]:
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidTensor(f"{what}: parameters must be an object")
    return parameters


def _optional_str(value: object, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidTensor(f'"{what}" must be a string')
    return value


@dataclass(frozen=True)
class Output:
    name: str
    datatype: str
    data: np.ndarray
    binary: bool


def encode_response(
    document: dict[str, Any], outputs: Sequence[Output]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it."""
    entries, chunks = [], []
    for output in outputs:
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(output.data.shape),
        }
        if output.binary:
            chunk = to_binary(output.data, output.datatype)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = _to_json(output.data, output.datatype)
        entries.append(entry)
    header = json.dumps({**document, "outputs": entries}, separators=(",", ":")).encode()
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def to_binary(data: np.ndarray, datatype: str) -> bytes:
    """`data` in the binary form that `from_binary` reads."""
    if datatype == "BYTES":
        return b"".join(
            struct.pack("<I", len(item)) + item for item in (_as_bytes(x) for x in data.flat)
        )
    return np.ascontiguousarray(data, dtype=DTYPES[datatype]).tobytes()


def _to_json(data: np.ndarray, datatype: str) -> list[Any]:
    if datatype == "BYTES":
        return [_as_bytes(x).decode() for x in data.flat]
    return data.astype(DTYPES[datatype], copy=False).ravel().tolist()


def _as_bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()
