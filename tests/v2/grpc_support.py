"""What the gRPC client tests share: tritonclient.grpc inputs, outputs and error checks.

tritonclient.grpc registers the protocol's messages (package `inference`) in protobuf's
process-wide registry, as KServe's SDK and the service's own stubs do, and no process can hold
two of them: these tests never import `service.grpc`, and KServe's clients run in a process of
their own (tests/v2/test_kserve_clients.py)."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as triton


def files_input(files: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput("image_files", [len(files)], "BYTES")
    tensor.set_data_from_numpy(np.array(files, dtype=object))
    return tensor


def pixels_input(
    array: np.ndarray, name: str = "images", datatype: str = "FP32"
) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def wanted(*names: str) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name) for name in names]
