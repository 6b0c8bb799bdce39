"""Static checks of the Dockerfile and .dockerignore (no Docker engine on the CI machine).

They pin down what the image promises: a slim multi-stage build whose base image and package
index are build arguments, no PyTorch unless a flavour is asked for (CPU serving runs on ONNX
Runtime; the CUDA image, which cannot be built without its wheel index, is checked only here),
dependencies installed before the code is copied, a non-root user, a Python health probe on
/readyz, the checkpoints baked in, and a build context that has every file the Dockerfile copies.
scripts/container_check.sh builds and runs the CPU image where podman is installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [
        line
        for line in (REPO / "Dockerfile").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def args_of(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [rest for kw, rest in stage if kw == keyword]


def global_args() -> list[str]:
    """The ARGs before the first FROM, which FROM lines may use."""
    result = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            break
        if keyword == "ARG":
            result.append(rest)
    return result


def test_multi_stage_on_slim_python_311_by_default():
    assert global_args() == ["PYTHON_VERSION=3.11", "PYTHON_IMAGE=python:${PYTHON_VERSION}-slim"]
    froms = [stage[0][1] for stage in stages()]
    assert len(froms) == 3
    assert froms[0] == "${PYTHON_IMAGE} AS deps"
    assert froms[-1] == "${PYTHON_IMAGE} AS runtime"


@pytest.mark.parametrize("stage", [0, 1], ids=["deps", "wheel"])
def test_stages_that_download_take_the_package_index_as_build_arguments(stage):
    # pip reads PIP_INDEX_URL and PIP_CERT from the environment, where RUN finds its ARGs.
    args = args_of(stages()[stage], "ARG")
    assert "PIP_INDEX_URL=https://pypi.org/simple" in args and "PIP_CERT" in args


def test_no_torch_by_default_and_the_flavour_index_when_asked():
    deps = stages()[0]
    assert "TORCH_FLAVOUR=" in args_of(deps, "ARG")
    runs = args_of(deps, "RUN")
    (torch_run,) = [run for run in runs if "download.pytorch.org" in run]
    assert 'if [ -n "$TORCH_FLAVOUR" ]' in torch_run
    assert '--index-url "https://download.pytorch.org/whl/${TORCH_FLAVOUR}" torch==2.14.1' in (
        torch_run
    )
    # The same pin as the `torch` extra, which the requirements step adds for a flavour.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "torch==2.14.1" in pyproject["optional-dependencies"]["torch"]
    (requirements_run,) = [run for run in runs if "-r /tmp/req" in run]
    assert "['optional-dependencies']['torch']" in requirements_run


def test_requirements_step_installs_what_pyproject_lists(tmp_path):
    """The RUN line's Python, run here: base dependencies, plus the `torch` extra for a flavour."""
    (run,) = [run for run in args_of(stages()[0], "RUN") if "-r /tmp/req" in run]
    code = re.search(r'python -c "(.*?)" +"\$TORCH_FLAVOUR"', run, re.DOTALL)[1]
    code = code.replace("/tmp/pyproject.toml", str(REPO / "pyproject.toml"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for flavour, expected in [
        ("", project["dependencies"]),
        ("cu130", project["dependencies"] + project["optional-dependencies"]["torch"]),
    ]:
        listed = subprocess.run(
            [sys.executable, "-c", code, flavour], capture_output=True, text=True, check=True
        )
        assert listed.stdout.split() == [line.replace(" ", "") for line in expected]
    assert not any(line.startswith("torch") for line in project["dependencies"])


def test_dependencies_are_installed_before_the_code_is_copied():
    flat = instructions()
    first_code_copy = next(
        i
        for i, (kw, rest) in enumerate(flat)
        if kw == "COPY" and rest.startswith(("ml", "service"))
    )
    install = next(i for i, (kw, rest) in enumerate(flat) if kw == "RUN" and "-r /tmp/req" in rest)
    assert install < first_code_copy


def test_runtime_stage_is_non_root_with_a_python_readiness_probe():
    runtime = stages()[-1]
    env = " ".join(args_of(runtime, "ENV"))
    assert "PYTHONUNBUFFERED=1" in env and "FMNIST_WORKERS=1" in env
    users = args_of(runtime, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert args_of(runtime, "EXPOSE") == ["8000 8001"]  # HTTP, gRPC
    assert "FMNIST_GRPC_PORT=8001" in env
    (healthcheck,) = args_of(runtime, "HEALTHCHECK")
    assert '"python", "/app/healthcheck.py"' in healthcheck
    assert "COPY deploy/healthcheck.py ./healthcheck.py" in [
        f"COPY {r}" for r in args_of(runtime, "COPY")
    ]
    assert "readyz" in (REPO / "deploy" / "healthcheck.py").read_text()
    assert "checkpoints ./checkpoints" in args_of(runtime, "COPY")
    assert "FMNIST_CHECKPOINT_DIR=/app/checkpoints" in env
    assert args_of(runtime, "WORKDIR") == ["/app"]
    (cmd,) = args_of(runtime, "CMD")
    # exec form: fmnist-serve is PID 1 and gets SIGTERM itself; it reads FMNIST_WORKERS
    assert cmd == '["fmnist-serve", "--host", "0.0.0.0", "--port", "8000"]'
    assert "FMNIST_WORKERS=1" in env


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""

    def regex(pattern: str) -> re.Pattern:
        out = ""
        for token in re.split(r"(\*\*/?|\*|\?)", pattern.strip("/")):
            out += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                token, re.escape(token)
            )
        return re.compile(out + r"\Z")

    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = regex(line.lstrip("!"))
        if any(pattern.match(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


@pytest.mark.parametrize(
    "path",
    ["pyproject.toml", "ml/models.py", "service/settings.py", "deploy/healthcheck.py"],
)
def test_build_context_keeps_what_the_dockerfile_copies(path):
    assert not dockerignore_excludes(path)


def test_build_context_keeps_the_checkpoints():
    assert not dockerignore_excludes("checkpoints/mynet.safetensors")
    assert not dockerignore_excludes("checkpoints/mynet.json")


@pytest.mark.parametrize(
    "path", [".git/HEAD", ".venv/bin/python", "runs/quick/log.txt", "ml/__pycache__/x.pyc"]
)
def test_build_context_leaves_out_the_rest(path):
    assert dockerignore_excludes(path)


def test_every_copy_source_is_in_the_build_context():
    for keyword, rest in instructions():
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        for source in rest.split()[:-1]:
            if "*" in source:  # an optional glob such as README.md*
                continue
            # service/ and checkpoints/ come from the service and training work, whose own tests
            # fail without them; here only their place in the build context is checked.
            assert source in ("service", "checkpoints") or (REPO / source).exists(), source
            assert not dockerignore_excludes(source), source
