"""KServe's SDK clients (REST and gRPC), run in a pytest process of their own: see
tests/v2/kserve_checks.py for why and what they check."""

from __future__ import annotations

import subprocess
import sys

from tests.live_service import REPO

CHECKS = "tests/v2/kserve_checks.py"


def test_kserve_sdk_clients() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", CHECKS, "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]
