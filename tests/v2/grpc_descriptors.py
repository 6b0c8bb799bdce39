"""The service's gRPC protocol as protoc reads it from service/grpc/grpc_predict_v2.proto, and
the wire compatibility of two protocol descriptions. Made without importing any generated
module, so a process can hold it beside a client library's own copy of the messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

from tests.live_service import REPO

PROTO = "service/grpc/grpc_predict_v2.proto"


def service_proto(tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    out = tmp_path / "grpc_predict_v2.desc"
    command = ["-I", ".", f"--descriptor_set_out={out}", PROTO]
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", *command], cwd=REPO, check=True)
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]


def fields(proto: descriptor_pb2.FileDescriptorProto) -> dict[tuple[str, int], tuple]:
    """Every field of every message (nested ones too), by its message's full name and its
    number, as the wire sees it: its type, label and message type; not its name."""
    found: dict[tuple[str, int], tuple] = {}

    def walk(message: descriptor_pb2.DescriptorProto, prefix: str) -> None:
        name = f"{prefix}.{message.name}"
        for nested in message.nested_type:
            walk(nested, name)
        for field in message.field:
            found[name, field.number] = (field.type, field.label, field.type_name)

    for message in proto.message_type:
        walk(message, "." + proto.package)
    return found


def methods(proto: descriptor_pb2.FileDescriptorProto) -> dict[str, tuple]:
    return {
        f"/{proto.package}.{service.name}/{method.name}": (
            method.input_type,
            method.output_type,
            method.client_streaming,
            method.server_streaming,
        )
        for service in proto.service
        for method in service.method
    }


def differences(
    ours: descriptor_pb2.FileDescriptorProto,
    theirs: descriptor_pb2.FileDescriptorProto,
    messages: set[str],
) -> list[str]:
    """Where `theirs` would read or write `messages` (full names) or call a method of ours
    differently: each of their fields must be ours, field for field."""
    mine, other = fields(ours), fields(theirs)
    found = [
        f"{message} field {number}: theirs {spec}, ours {mine.get((message, number))}"
        for (message, number), spec in other.items()
        if message in messages and mine.get((message, number)) != spec
    ]
    our_methods = methods(ours)
    found += [
        f"{path}: theirs {spec}, ours {our_methods[path]}"
        for path, spec in methods(theirs).items()
        if path in our_methods and our_methods[path] != spec
    ]
    return found
