"""Fixtures for the client and CLI tests: one real service process for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client.live_server import Server, running_service


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_service(tmp_path_factory.mktemp("service") / "uvicorn.log") as running:
        yield running
