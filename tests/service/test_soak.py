"""scripts/soak.py: its 30-second version against a real `fmnist-serve` must pass, a failed
criterion must fail the run (exit status 1), and each criterion is judged as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live_service import CHECKPOINT_DIR, REPO

SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(SCRIPTS))  # soak.py imports its neighbours as top-level modules
import soak  # noqa: E402


def run_soak(tmp_path: Path, *options: str) -> tuple[int, str, str]:
    """The script as CI runs it: exit status, the report, and what it printed."""
    report = tmp_path / "soak.md"
    environment = {**os.environ, "FMNIST_CHECKPOINT_DIR": str(CHECKPOINT_DIR)}
    environment |= {"FMNIST_DEVICE": "cpu"}
    environment.pop("FMNIST_API_KEY", None)
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "soak.py"), "--output", str(report), *options],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = report.read_text() if report.exists() else ""
    return done.returncode, text, done.stdout + done.stderr


def test_a_30_second_soak_of_every_endpoint_passes(tmp_path):
    options = ["--duration", "30", "--window", "10", "--warmup", "10"]
    code, report, output = run_soak(tmp_path, *options)
    assert "**PASS**" in report, output
    assert code == 0, output
    assert "- pass errors: 0 of" in report
    assert "- pass memory" in report and "- pass descriptors" in report
    assert "| worker " in report  # the workers were read from /proc


def test_a_failed_criterion_fails_the_run(tmp_path):
    """Memory may not grow by -100%: the run fails on that criterion, and exits 1."""
    options = ["--duration", "3", "--window", "1", "--warmup", "1", "--sample", "0.5"]
    code, report, output = run_soak(tmp_path, *options, "--max-rss-growth", "-100")
    assert code == 1, output
    assert "**FAIL**" in report and "- FAIL memory" in report, report


def outcome(status: str = "200", at: float = 1.0) -> soak.Outcome:
    return soak.Outcome(at, "classify multipart", status, 0.01)


def samples(
    worker_mb: tuple[float, float], worker_fds: tuple[int, int], new_worker: bool = False
) -> list[soak.Sample]:
    """Two processes sampled at 0, 10, 20 s: the supervisor, steady, and a worker whose memory
    and descriptors are the first value until 20 s and the second from then on."""
    taken = []
    for at in (0.0, 10.0, 20.0):
        late = at >= 20
        taken.append(soak.Sample(at, 1, "main", 40.0, 13, 2))
        taken.append(
            soak.Sample(at, 2, "worker", worker_mb[late], worker_fds[late], 20),
        )
    if new_worker:
        taken.append(soak.Sample(20.0, 3, "worker", 200.0, 40, 20))
    return taken


@pytest.mark.parametrize(
    ("outcomes", "taken", "passed", "failed"),
    [
        ([outcome()] * 5, samples((200, 204), (40, 40)), True, None),
        ([outcome(), outcome("503")], samples((200, 200), (40, 40)), False, "FAIL errors"),
        ([outcome(), outcome("ReadError")], samples((200, 200), (40, 40)), False, "FAIL errors"),
        ([outcome()], samples((200, 212), (40, 40)), False, "FAIL memory"),
        ([outcome()], samples((200, 200), (40, 41)), False, "FAIL descriptors"),
        ([outcome()], samples((200, 200), (40, 40), new_worker=True), False, "FAIL workers"),
    ],
)
def test_each_criterion_is_judged(outcomes, taken, passed, failed):
    verdict = soak.judge(outcomes, taken, duration=30, width=10, warmup=10, max_rss_growth=5)
    assert verdict.passed is passed, verdict.lines
    if failed:
        assert any(line.startswith(failed) for line in verdict.lines), verdict.lines


def test_the_mix_covers_every_operation_but_the_repository_loads():
    """Against the app's own OpenAPI document: a new operation must join the mix."""
    from service.app import create_app
    from tests.service.support import make_settings

    document = create_app(make_settings()).openapi()
    images = [path.read_bytes() for path in sorted(soak.EXAMPLES.glob("*.png"))]
    calls = soak.the_mix(images, {"mynet": "0" * 12, "vae": "1" * 12})
    assert soak.uncovered(document, calls) == []
    assert {call.name for call in calls if call.expect == soak.PNG_MAGIC} >= {
        "classify png",
        "embed png",
        "reconstruct png",
        "interpolate png",
        "generate png",
    }
