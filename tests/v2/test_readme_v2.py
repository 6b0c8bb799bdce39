"""The README's tritonclient examples (HTTP and gRPC) run against a live service and print what
they promise. (Its curl examples for v2 run with the others in
tests/client/test_readme_commands.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live_service import REPO

README = (REPO / "README.md").read_text()
EXAMPLES = [
    block for block in re.findall(r"```python\n(.*?)```", README, re.S) if "tritonclient" in block
]


def test_the_readme_shows_v2_with_curl_and_tritonclient() -> None:
    assert any("tritonclient.http" in code for code in EXAMPLES)
    assert any("tritonclient.grpc" in code and "localhost:8001" in code for code in EXAMPLES)
    curl = [line for line in README.splitlines() if line.startswith("curl") and "/v2/" in line]
    assert any("/infer" in line for line in curl)
    assert any("/v2/repository/" in line for line in curl)


@pytest.mark.parametrize("code", EXAMPLES)
def test_tritonclient_example(url: str, grpc_target: str, tmp_path: Path, code: str) -> None:
    (tmp_path / "examples").symlink_to(REPO / "examples")
    code = code.replace("localhost:8000", url.removeprefix("http://"))
    code = code.replace("localhost:8001", grpc_target)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "[b'Bag' b'Sneaker']" in done.stdout
