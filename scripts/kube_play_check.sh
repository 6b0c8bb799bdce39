#!/usr/bin/env bash
# Play the Kubernetes Deployment of deploy/kubernetes/overlays/cpu with `podman kube play` on a
# built image and check that it answers /readyz: its ConfigMap, probes, security context
# (non-root, read-only root filesystem, no capabilities) and /tmp volume work with the image.
#
#   scripts/kube_play_check.sh IMAGE        (run by scripts/container_check.sh)
#
# Needs podman and kubectl (for its built-in kustomize). podman plays Pods, Deployments and
# ConfigMaps; the Service, HPA and PDB are left out here (tests/deploy validates them).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${1:?usage: $0 IMAGE}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}"
PYTHON="${PYTHON:-.venv/bin/python}"
READY_TIMEOUT_S=60
WORK="$(mktemp -d)"
PLAYED="$WORK/play.yaml"

fail() {
    echo "kube-play: FAILED: $*" >&2
    exit 1
}
cleanup() {
    if [ -s "$PLAYED" ]; then
        podman kube down "$PLAYED" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v kubectl >/dev/null; then
    echo "kube-play: SKIP: kubectl is not installed (its built-in kustomize renders the overlay)"
    exit 0
fi

# The overlay as rendered, less what podman does not play, its image replaced by the build.
kubectl kustomize deploy/kubernetes/overlays/cpu >"$WORK/rendered.yaml" || fail "kubectl kustomize"
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# One replica (podman starts every replica in one network namespace), published on a free
# loopback port (podman would otherwise bind the container port on every address).
"$PYTHON" - "$WORK/rendered.yaml" "$IMAGE" "$PORT" >"$PLAYED" <<'EOF'
import sys

import yaml

rendered, image, port = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
docs = [d for d in docs if d["kind"] in ("ConfigMap", "Deployment")]
for doc in docs:
    if doc["kind"] == "Deployment":
        doc["spec"]["replicas"] = 1
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        container["image"] = image
        container["ports"][0] |= {"hostIP": "127.0.0.1", "hostPort": int(port)}
print(yaml.safe_dump_all(docs))
EOF

start=$SECONDS
podman kube play "$PLAYED" >"$WORK/play.log" 2>&1 || { cat "$WORK/play.log" >&2; fail "podman kube play"; }
deployment=$("$PYTHON" -c 'import sys, yaml; print(next(d["metadata"]["name"] for d in yaml.safe_load_all(open(sys.argv[1])) if d["kind"] == "Deployment"))' "$PLAYED")
# podman names the pod after the Deployment (with a replica number) and the container after both.
container=$(podman ps -a --format '{{.Names}}' --filter "name=^$deployment-pod.*-api\$")
[ -n "$container" ] || fail "no container for Deployment $deployment"
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do
    state=$(podman inspect --format '{{.State.Status}}' "$container" 2>/dev/null || echo missing)
    if [ "$state" != running ] || [ $((SECONDS - start)) -ge "$READY_TIMEOUT_S" ]; then
        podman logs "$container" 2>&1 | tail -20 >&2 || true
        fail "$container ($state) did not answer /readyz within ${READY_TIMEOUT_S} s"
    fi
    sleep 1
done
uid=$(podman exec "$container" awk '/^Uid:/ {print $2}' /proc/1/status)
[ "$uid" != 0 ] || fail "the server runs as root"
if podman exec "$container" sh -c ': > /app/written' 2>/dev/null; then
    fail "the root filesystem is writable"
fi
device=$(podman exec "$container" printenv FMNIST_DEVICE)
echo "kube-play: Deployment $deployment from overlays/cpu answered /readyz after $((SECONDS - start)) s" \
    "(uid $uid, read-only root, FMNIST_DEVICE=$device from the ConfigMap)"
