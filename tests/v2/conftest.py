"""Fixtures for the v2 tests: one real service process (no API key) shared by the client tests,
over HTTP and gRPC, and the example images."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.live_service import REPO, free_port, running_service

EXAMPLES = REPO / "examples"
PICTURES = ("trouser.png", "bag.png", "boot.png", "shirt.png")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class V2Service:
    url: str  # HTTP
    grpc_target: str  # host:port of its gRPC server


@pytest.fixture(scope="session")
def v2_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[V2Service]:
    """A live service with every model loaded, over HTTP and gRPC."""
    log = tmp_path_factory.mktemp("v2-service") / "uvicorn.log"
    grpc_port = free_port()
    env = {"FMNIST_INSTANCE_ID": "v2-tests", "FMNIST_GRPC_PORT": str(grpc_port)}
    with running_service(log, env) as service:
        yield V2Service(service.url, f"127.0.0.1:{grpc_port}")


@pytest.fixture(scope="session")
def url(v2_service: V2Service) -> str:
    return v2_service.url


@pytest.fixture(scope="session")
def grpc_target(v2_service: V2Service) -> str:
    return v2_service.grpc_target


@pytest.fixture(scope="session")
def files() -> list[bytes]:
    return [(EXAMPLES / name).read_bytes() for name in PICTURES]


def example(name: str) -> Path:
    return EXAMPLES / name
