"""Every curl and `fmnist` command in the README's code blocks runs against a live service."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.live_server import Server

ROOT = Path(__file__).resolve().parents[2]


def readme_commands(program: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    # A line may hold several commands separated by `;`.
    commands = [part.strip() for line in lines for part in line.split("; ")]
    return [c for c in commands if c.split(" ", 1)[0].endswith(program)]


CURL = readme_commands("curl")
CLI = readme_commands("fmnist")


def test_the_readme_has_examples_for_every_endpoint() -> None:
    text = " ".join(CURL)
    for route in (
        "/classify",
        "/explain",
        "/embed",
        "/reconstruct",
        "/interpolate",
        "/generate",
        "/models",
    ):
        assert route in text
    assert len(CLI) >= 3


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A scratch folder where `examples/` resolves, so `-o` files land outside the repo."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    return tmp_path


@pytest.mark.parametrize("command", CURL)
def test_curl_example(server: Server, workdir: Path, command: str) -> None:
    address = server.url.removeprefix("http://")
    command = command.replace("localhost:8000", address)
    command = command.replace(
        "curl ", f"curl -sS --fail-with-body -H 'X-API-Key: {server.api_key}' "
    )
    done = subprocess.run(
        ["bash", "-c", command], cwd=workdir, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for output in re.findall(r"-o (\S+)", command):
        assert (workdir / output).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("command", CLI)
def test_cli_example(server: Server, workdir: Path, command: str) -> None:
    argv = shlex.split(command)
    argv[0:1] = [sys.executable, "-m", "fmnist_client.cli"]
    env = {
        "FMNIST_URL": server.url,
        "FMNIST_API_KEY": server.api_key,
        "PYTHONPATH": f"{ROOT}:{ROOT / 'client'}",
    }
    done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
