"""A real service process for the client and CLI tests, and what the tests share about it.

The checkpoints are the shipped `checkpoints/` unless FMNIST_CHECKPOINT_DIR says otherwise.
The service runs with an API key, so that authentication is exercised too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CHECKPOINT_DIR = Path(os.environ.get("FMNIST_CHECKPOINT_DIR", REPO / "checkpoints"))
API_KEY = "client-test-key"
INSTANCE_ID = "client-tests"


@dataclass(frozen=True)
class Server:
    url: str
    api_key: str


def free_port() -> int:
    """A loopback port nothing listens on (right now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_service(log: Path, timeout: float = 90) -> Iterator[Server]:
    """`uvicorn service.app:app` on a free loopback port, ready (models loaded) on entry and
    stopped on exit. Its output goes to `log`: a pipe nobody reads would block it when full."""
    port = free_port()
    env = {
        **os.environ,
        "FMNIST_CHECKPOINT_DIR": str(CHECKPOINT_DIR),
        "FMNIST_DEVICE": "cpu",
        "FMNIST_API_KEY": API_KEY,
        "FMNIST_INSTANCE_ID": INSTANCE_ID,
    }
    command = [sys.executable, "-m", "uvicorn", "service.app:app"]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, process, log, timeout)
        yield Server(url, API_KEY)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    raise RuntimeError(f"the service was not ready within {timeout} s:\n{log.read_text()}")
