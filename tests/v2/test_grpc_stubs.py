"""The committed gRPC stubs are what `make grpc-stubs` makes from the proto, and the proto is
Triton's protocol on the wire (KServe's: tests/v2/kserve_checks.py)."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2
from tritonclient.grpc import service_pb2

from tests.live_service import REPO
from tests.v2.grpc_descriptors import PROTO, differences, fields, methods, service_proto

GENERATED = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")


def test_the_committed_stubs_are_current(tmp_path: Path) -> None:
    (tmp_path / "service" / "grpc").mkdir(parents=True)
    shutil.copy(REPO / PROTO, tmp_path / PROTO)
    command = ["-I", ".", "--python_out=.", "--pyi_out=.", "--grpc_python_out=.", PROTO]
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", *command], cwd=tmp_path, check=True)
    for name in GENERATED:
        fresh, committed = tmp_path / "service" / "grpc" / name, REPO / "service" / "grpc" / name
        assert filecmp.cmp(fresh, committed, shallow=False), f"{name}: run make grpc-stubs"


def test_the_proto_is_tritons_on_the_wire(tmp_path: Path) -> None:
    ours = service_proto(tmp_path)
    triton = descriptor_pb2.FileDescriptorProto()
    service_pb2.DESCRIPTOR.CopyToProto(triton)
    messages = {message for message, _ in fields(ours)}
    # The repository responses carry KServe's fields, which Triton's empty ones skip.
    assert differences(ours, triton, messages) == []
    served = set(methods(ours))
    assert served <= set(methods(triton))
    assert "/inference.GRPCInferenceService/ModelStreamInfer" in served
