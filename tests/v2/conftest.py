"""Fixtures for the v2 tests: one real service process (no API key) shared by the client tests,
and the example images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_service import REPO, running_service

EXAMPLES = REPO / "examples"
PICTURES = ("trouser.png", "bag.png", "boot.png", "shirt.png")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a live service with every model loaded."""
    log = tmp_path_factory.mktemp("v2-service") / "uvicorn.log"
    with running_service(log, {"FMNIST_INSTANCE_ID": "v2-tests"}) as service:
        yield service.url


@pytest.fixture(scope="session")
def files() -> list[bytes]:
    return [(EXAMPLES / name).read_bytes() for name in PICTURES]


def example(name: str) -> Path:
    return EXAMPLES / name
