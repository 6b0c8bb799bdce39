"""Tensors of the v2 protocol over gRPC: a `ModelInferRequest` read into the request that
`service.v2.inference` runs, and its outputs written into a `ModelInferResponse`.

An input's elements come either in its `contents`, in the field of its datatype, or, for every
input at once, in `raw_input_contents` (one entry per input, laid out as the REST protocol's
binary data: little-endian, row-major, each BYTES element after its 4-byte length), which is
what tritonclient sends. Outputs always go back as `raw_output_contents`, which every client
reads and which costs no per-element conversion. Shapes, datatypes and element counts are
checked by the same functions as REST's (`service.v2.tensors`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from service.grpc import grpc_predict_v2_pb2 as pb
from service.v2.tensors import (
    DTYPES,
    InferRequest,
    InvalidTensor,
    Output,
    Tensor,
    element_count,
    from_binary,
    shaped,
    to_binary,
)

CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The `InferTensorContents` field of each datatype; FP16 has none (raw contents only)."""


def read_request(message: pb.ModelInferRequest) -> InferRequest:
    """The request `message` carries; raises `InvalidTensor`."""
    if not message.inputs:
        raise InvalidTensor("the inference request needs at least one input")
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise InvalidTensor(
            f"{len(raw)} raw_input_contents for {len(message.inputs)} inputs: one per input, "
            "or none"
        )
    inputs = [
        _read_input(tensor, raw[i] if raw else None) for i, tensor in enumerate(message.inputs)
    ]
    return InferRequest(
        id=message.id or None,
        inputs=inputs,
        outputs={output.name: None for output in message.outputs},
        parameters=parameters(message.parameters),
    )


def parameters(entries: Mapping[str, pb.InferParameter | pb.ModelRepositoryParameter]) -> dict:
    """Protocol parameters as plain values (an entry with no value set is None)."""
    return {
        key: getattr(value, choice) if (choice := value.WhichOneof("parameter_choice")) else None
        for key, value in entries.items()
    }


def _read_input(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> Tensor:
    name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
    count = element_count(name, datatype, shape)
    if raw is not None:
        flat = from_binary(raw, datatype, count, name)
    else:
        flat = _from_contents(tensor.contents, datatype, count, name)
    return shaped(name, datatype, shape, flat, binary=True)


def _from_contents(
    contents: pb.InferTensorContents, datatype: str, count: int, name: str
) -> np.ndarray:
    field = CONTENTS.get(datatype)
    if field is None:
        raise InvalidTensor(f"input {name!r}: {datatype} data travels only in raw_input_contents")
    values: Sequence[object] = getattr(contents, field)
    if datatype == "BYTES":
        flat = np.empty(len(values), dtype=object)
        flat[:] = list(values)
    else:
        try:
            flat = np.array(values, dtype=DTYPES[datatype])
        except (OverflowError, ValueError):  # e.g. 300 in int_contents as INT8
            raise InvalidTensor(f"input {name!r}: {field} out of the range of {datatype}") from None
    if len(flat) != count:
        raise InvalidTensor(
            f"input {name!r}: {len(flat)} elements in {field}, its shape needs {count}"
        )
    return flat


def write_response(
    model: str, version: str, request_id: str | None, outputs: Sequence[Output]
) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=model, model_version=version, id=request_id or "")
    for output in outputs:
        response.outputs.add(
            name=output.name, datatype=output.datatype, shape=list(output.data.shape)
        )
        response.raw_output_contents.append(to_binary(output.data, output.datatype))
    return response
