"""What the client and CLI tests share about the live service they talk to (started once per
session by conftest.py). It runs with an API key, so that authentication is exercised too."""

from __future__ import annotations

from dataclasses import dataclass

from tests.live_service import REPO

EXAMPLES = REPO / "examples"
API_KEY = "client-test-key"
INSTANCE_ID = "client-tests"


@dataclass(frozen=True)
class Server:
    url: str
    api_key: str
