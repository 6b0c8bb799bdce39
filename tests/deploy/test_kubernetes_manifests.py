"""The Kubernetes and KServe manifests, validated offline.

- Kubernetes: the kustomize overlays (deploy/kubernetes/overlays/{cpu,gpu}) rendered by
  `kubectl kustomize`, and every base file, validated by kubernetes-validate against the strict
  OpenAPI schemas (unknown fields are errors) of the Kubernetes versions in KUBERNETES_VERSIONS.
- KServe: deploy/kserve/inferenceservice.yaml against the InferenceService CRD's own schema,
  deploy/kserve/inferenceservice.schema.json (taken from KServe v0.20.0's
  config/crd/full/serving.kserve.io_inferenceservices.yaml, Apache License 2.0), made strict the
  same way.
- Then what matters for running them: probes, security, resources, labels and selectors that
  agree, the GPU overlay's device and GPU limit, the KServe predictor matching the Deployment.

scripts/kube_play_check.sh (run by `make container-check`) plays the rendered Deployment with
`podman kube play` on the built image.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
KSERVE = REPO / "deploy" / "kserve"
# The oldest minor version still supported upstream when written, and the newest the validator
# ships schemas for.
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
KUBECTL = shutil.which("kubectl")

needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl (with its built-in kustomize) is not installed"
)


def render(overlay: str) -> list[dict]:
    rendered = subprocess.run(
        [KUBECTL, "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def by_kind(docs: list[dict]) -> dict[str, dict]:
    kinds = [doc["kind"] for doc in docs]
    assert len(kinds) == len(set(kinds)), kinds
    return {doc["kind"]: doc for doc in docs}


def base_documents() -> list[dict]:
    listed = yaml.safe_load((KUBERNETES / "base" / "kustomization.yaml").read_text())
    return [
        yaml.safe_load((KUBERNETES / "base" / name).read_text()) for name in listed["resources"]
    ]


def validation_errors(doc: dict, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{doc['kind']}: {'.'.join(map(str, error.path))}: {error.message}"]
    return []


@pytest.fixture(scope="module", params=["cpu", "gpu"])
def overlay(request) -> tuple[str, dict[str, dict]]:
    if KUBECTL is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    return request.param, by_kind(render(request.param))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_base_files_validate(version):
    docs = base_documents()
    assert {doc["kind"] for doc in docs} == {
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    errors = [error for doc in docs for error in validation_errors(doc, version)]
    assert not errors, "\n".join(errors)


@needs_kubectl
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_rendered_overlays_validate(name, version):
    docs = render(name)
    assert len(docs) == 5
    errors = [error for doc in docs for error in validation_errors(doc, version)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_ingress_validates_and_bounds_slow_clients_as_the_service_does(version):
    docs = list(yaml.safe_load_all((KUBERNETES / "ingress" / "ingress.yaml").read_text()))
    assert [error for doc in docs for error in validation_errors(doc, version)] == []
    controller, ingress = by_kind(docs)["ConfigMap"], by_kind(docs)["Ingress"]
    settings = Settings()
    assert controller["data"]["client-header-timeout"] == f"{settings.head_timeout_s:g}"
    assert controller["data"]["client-body-timeout"] == f"{settings.body_timeout_s:g}"
    count, size = controller["data"]["large-client-header-buffers"].split()
    assert int(count) * int(size.removesuffix("k")) * 1024 <= 2 * settings.max_head_bytes
    annotations = ingress["metadata"]["annotations"]
    body_size = int(annotations["nginx.ingress.kubernetes.io/proxy-body-size"].removesuffix("m"))
    assert body_size * 2**20 == settings.max_upload_bytes
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = next(doc for doc in base_documents() if doc["kind"] == "Service")
    assert backend["name"] == service["metadata"]["name"]


def test_strict_validation_catches_misspelt_fields():
    deployment = by_kind(base_documents())["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert validation_errors(deployment, KUBERNETES_VERSIONS[-1])


def api_container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_deployment_probes_security_and_termination(overlay):
    _, docs = overlay
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = api_container(docs["Deployment"])
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # The only writable place is an emptyDir on /tmp (MPLCONFIGDIR in the Dockerfile).
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]
    assert "MPLCONFIGDIR=/tmp/matplotlib" in (REPO / "Dockerfile").read_text()
    # preStop delay, then the drain, inside the grace period.
    delay = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert 0 < delay < pod["terminationGracePeriodSeconds"] - 10


def test_settings_from_the_configmap_and_the_key_from_a_secret(overlay):
    _, docs = overlay
    container = api_container(docs["Deployment"])
    config = docs["ConfigMap"]
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    assert all(key.startswith("FMNIST_") for key in config["data"])
    assert "FMNIST_API_KEY" not in config["data"]
    (key,) = [env for env in container["env"] if env["name"] == "FMNIST_API_KEY"]
    assert key["valueFrom"]["secretKeyRef"]["name"] == "fmnist-api-key"
    settings = pytest.importorskip("service.settings").Settings.model_fields
    for name in config["data"]:
        assert name.removeprefix("FMNIST_").lower() in settings, name


def test_requests_fit_in_limits(overlay):
    _, docs = overlay
    resources = api_container(docs["Deployment"])["resources"]

    def quantity(value: str) -> float:
        units = {"m": 1e-3, "Mi": 2**20, "Gi": 2**30}
        for suffix, factor in units.items():
            if str(value).endswith(suffix):
                return float(str(value)[: -len(suffix)]) * factor
        return float(value)

    for resource in ("cpu", "memory"):
        requested = quantity(resources["requests"][resource])
        assert 0 < requested <= quantity(resources["limits"][resource]), resource


def test_service_hpa_and_pdb_point_at_the_deployment(overlay):
    _, docs = overlay
    deployment = docs["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert docs["Service"]["spec"]["selector"].items() <= labels.items()
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    (metric,) = docs["HorizontalPodAutoscaler"]["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


def test_grpc_port_from_the_configmap_through_the_service(overlay):
    """gRPC is on in every pod (the ConfigMap's FMNIST_GRPC_PORT), on the container port named
    `grpc`, which the Service exposes as HTTP/2 for meshes and gateways."""
    _, docs = overlay
    ports = {port["name"]: port for port in api_container(docs["Deployment"])["ports"]}
    grpc_port = int(docs["ConfigMap"]["data"]["FMNIST_GRPC_PORT"])
    assert ports["grpc"]["containerPort"] == grpc_port
    assert ports["http"]["containerPort"] != grpc_port
    service_ports = {port["name"]: port for port in docs["Service"]["spec"]["ports"]}
    assert service_ports["grpc"]["targetPort"] == "grpc"
    assert service_ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"


def test_overlays_choose_image_and_device(overlay):
    name, docs = overlay
    container = api_container(docs["Deployment"])
    limits = container["resources"]["limits"]
    if name == "cpu":
        assert docs["ConfigMap"]["data"]["FMNIST_DEVICE"] == "cpu"
        assert container["image"].startswith("fmnist-service:") and "gpu" not in container["image"]
        assert "nvidia.com/gpu" not in limits
    else:
        assert docs["ConfigMap"]["data"]["FMNIST_DEVICE"] == "cuda"
        assert container["image"].endswith("-gpu")
        assert limits["nvidia.com/gpu"] == 1
        tolerations = docs["Deployment"]["spec"]["template"]["spec"]["tolerations"]
        assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)


def strict(schema):
    """A CRD schema that, like `kubectl apply --validate=strict`, rejects unknown fields:
    every object that lists its properties and allows no others gets additionalProperties
    false. The CRD itself relies on the API server pruning them instead."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


@pytest.fixture(scope="module")
def kserve_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((KSERVE / "inferenceservice.schema.json").read_text())
    return jsonschema.Draft7Validator(strict(schema))


def inference_service(name: str = "inferenceservice.yaml") -> dict:
    return yaml.safe_load((KSERVE / name).read_text())


@pytest.mark.parametrize("name", ["inferenceservice.yaml", "inferenceservice-grpc.yaml"])
def test_inference_service_matches_the_kserve_crd(kserve_validator, name):
    isvc = inference_service(name)
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    errors = [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in kserve_validator.iter_errors(isvc)
    ]
    assert not errors, "\n".join(errors)


def test_kserve_schema_check_catches_mistakes(kserve_validator):
    isvc = inference_service()
    isvc["spec"]["predictor"]["minReplica"] = 1
    isvc["spec"]["predictor"]["containers"][0]["resources"]["limits"] = "2"
    assert len(list(kserve_validator.iter_errors(isvc))) == 2


def test_kserve_predictor_runs_the_deployment_container():
    """The predictor's container is the Deployment's, but for what KServe owns (name, labels,
    config plumbing): same probes, resources, security and port."""
    predictor = inference_service()["spec"]["predictor"]
    (container,) = predictor["containers"]
    deployment = by_kind(base_documents())["Deployment"]
    reference = api_container(deployment)
    for field in ("resources", "securityContext", "lifecycle", "volumeMounts"):
        assert container[field] == reference[field], field
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == reference[probe]["httpGet"]["path"]
    assert container["ports"][0]["containerPort"] == reference["ports"][0]["containerPort"]
    pod = deployment["spec"]["template"]["spec"]
    assert predictor["securityContext"] == pod["securityContext"]
    assert predictor["volumes"] == pod["volumes"]
    config = by_kind(base_documents())["ConfigMap"]["data"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    for name in ("FMNIST_DEVICE", "FMNIST_WORKERS", "FMNIST_THREADS"):
        assert env[name] == config[name], name
    assert predictor["scaleMetric"] == "cpu"


def test_the_grpc_predictor_is_the_http_ones_with_an_h2c_port():
    """KServe takes one port per predictor container: the gRPC InferenceService is the HTTP
    one's container with gRPC on and its port declared `h2c`, probed over HTTP all the same."""
    http = inference_service()
    grpc = inference_service("inferenceservice-grpc.yaml")
    assert grpc["metadata"]["name"] != http["metadata"]["name"]
    (http_container,) = http["spec"]["predictor"]["containers"]
    (grpc_container,) = grpc["spec"]["predictor"]["containers"]
    env = {e["name"]: e.get("value") for e in grpc_container["env"]}
    (port,) = grpc_container["ports"]
    assert (port["name"], port["containerPort"]) == ("h2c", int(env["FMNIST_GRPC_PORT"]))
    assert "FMNIST_GRPC_PORT" not in {e["name"] for e in http_container["env"]}
    assert [e for e in grpc_container["env"] if e["name"] != "FMNIST_GRPC_PORT"] == http_container[
        "env"
    ]
    for field in set(http_container) - {"ports", "env"}:
        assert grpc_container[field] == http_container[field], field
    for field in set(http["spec"]["predictor"]) - {"containers"}:
        assert grpc["spec"]["predictor"][field] == http["spec"]["predictor"][field], field
