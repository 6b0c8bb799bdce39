"""The client distribution installed alone (`pip install ./client`) in a fresh virtual
environment: it brings no PyTorch, numpy, Pillow or service code, and drives the live service
from Python and from the `fmnist` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.live_server import EXAMPLES, Server
from tests.live_service import REPO


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("light-client")
    # A copy, links resolved, so that building it leaves nothing in the repository.
    source = shutil.copytree(REPO / "client", root / "client", symlinks=False)
    folder = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=120)
    install = subprocess.run(
        [folder / "bin" / "pip", "install", "-q", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    return folder


def run(venv: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.pop("FMNIST_API_KEY", None)
    return subprocess.run(
        argv, cwd=venv.parent, env=env, capture_output=True, text=True, timeout=120
    )


def test_nothing_heavy_is_installed(venv: Path) -> None:
    code = (
        "import importlib.util as u; "
        "print([m for m in ('torch', 'numpy', 'PIL', 'onnxruntime', 'service', 'ml') "
        "if u.find_spec(m)])"
    )
    done = run(venv, str(venv / "bin" / "python"), "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_python_client(venv: Path, server: Server) -> None:
    code = f"""
from fmnist_client import Client, ServiceError
with Client({server.url!r}, api_key={server.api_key!r}) as client:
    answer = client.classify([{str(EXAMPLES / "bag.png")!r}, {str(EXAMPLES / "boot.png")!r}])
    print([p.label for p in answer.predictions], [m.name for m in client.models()])
    try:
        client.classify({str(EXAMPLES / "bag.png")!r}, model="resnet")
    except ServiceError as exc:
        print(exc.code, exc.status)
"""
    done = run(venv, str(venv / "bin" / "python"), "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "['Bag', 'Ankle boot'] ['lenet', 'mynet', 'vae']",
        "unknown_model 422",
    ]


def test_command_line(venv: Path, server: Server) -> None:
    grid = venv.parent / "grid.png"
    auth = ["--url", server.url, "--api-key", server.api_key]
    fmnist = str(venv / "bin" / "fmnist")
    done = run(venv, fmnist, "classify", str(EXAMPLES / "trouser.png"), *auth)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split()[:2] == [str(EXAMPLES / "trouser.png"), "Trouser"]
    done = run(venv, fmnist, "generate", "-n", "4", "--seed", "1", "-o", str(grid), *auth)
    assert done.returncode == 0, done.stderr
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert done.stdout.strip().startswith(f"wrote {grid} (")
