"""Real `uvicorn service.app:app` processes for the end-to-end suites (service, client, deploy).

Each runs on a free loopback port, on CPU, with the checkpoints of FMNIST_CHECKPOINT_DIR (default:
the shipped `checkpoints/`) and no API key unless the caller sets one. Its output goes to a log
file: a pipe that nobody reads would block the process once full.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT_DIR = Path(os.environ.get("FMNIST_CHECKPOINT_DIR", REPO / "checkpoints"))
STARTUP_TIMEOUT_S = 90.0  # imports torch and warms every model, on a small and maybe busy machine


def free_port() -> int:
    """A loopback port nothing listens on (right now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_ok(
    url: str, deadline: float, processes: Sequence[subprocess.Popen], logs: Callable[[], str]
) -> None:
    """Until GET `url` answers 200. Fails, showing `logs()`, when one of `processes` exits or
    `deadline` (on the time.monotonic clock) passes."""
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode}\n{logs()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 in time\n{logs()}")


class LiveService:
    """One service process, started on construction; `url` once `wait_until_ready` returns."""

    def __init__(self, log: Path, env: Mapping[str, str] | None = None, *options: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        environment = {
            **os.environ,
            "FMNIST_CHECKPOINT_DIR": str(CHECKPOINT_DIR),
            "FMNIST_DEVICE": "cpu",
        }
        environment.pop("FMNIST_API_KEY", None)
        environment |= env or {}
        command = [sys.executable, "-m", "uvicorn", "service.app:app", "--host", "127.0.0.1"]
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port), *options],
                cwd=REPO,
                env=environment,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_until_ready(self, deadline: float) -> None:
        """Until /readyz says the models are loaded."""
        wait_for_ok(f"{self.url}/readyz", deadline, [self.process], self.output)

    def stop(self) -> int | None:
        """SIGTERM, as a container runtime sends it (SIGKILL after 20 s); the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextmanager
def running_service(
    log: Path, env: Mapping[str, str] | None = None, *options: str
) -> Iterator[LiveService]:
    """A service that is ready on entry and stopped on exit."""
    service = LiveService(log, env, *options)
    try:
        service.wait_until_ready(time.monotonic() + STARTUP_TIMEOUT_S)
        yield service
    finally:
        service.stop()
