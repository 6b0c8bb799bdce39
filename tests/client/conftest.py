"""Fixtures for the client and CLI tests: one real service process for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client.live_server import API_KEY, INSTANCE_ID, Server
from tests.live_service import running_service


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("service") / "uvicorn.log"
    env = {"FMNIST_API_KEY": API_KEY, "FMNIST_INSTANCE_ID": INSTANCE_ID}
    with running_service(log, env) as service:
        yield Server(service.url, API_KEY)
