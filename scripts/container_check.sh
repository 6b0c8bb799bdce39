#!/usr/bin/env bash
# Build the CPU image from the working tree with podman and run it the way production does:
# read-only root filesystem (a tmpfs on /tmp only), all capabilities dropped, no new privileges.
# Then: /readyz within 30 s, 200 real test images through /classify at the expected accuracy,
# every endpoint once (scripts/container_probe.py), the image's HEALTHCHECK reported healthy,
# the server process not root, writes outside /tmp refused, a clean exit on SIGTERM, the image
# at most MAX_IMAGE_MB; then the Kubernetes Deployment played with `podman kube play`
# (scripts/kube_play_check.sh) and docker-compose.yml run with podman-compose
# (scripts/compose_check.sh).
#
#   scripts/container_check.sh        (make container-check)
#
# Needs podman (runc), debootstrap for the base image, the dev venv (.venv) and the dataset.
# Environment: PYTHON (default .venv/bin/python), PIP_INDEX_URL, PIP_CERT (CA bundle for the
# index; default: the one pip is configured with here), MAX_IMAGE_MB (default 500).
set -euo pipefail
cd "$(dirname "$0")/.."

export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}"
PYTHON="${PYTHON:-.venv/bin/python}"
BASE_IMAGE=localhost/fmnist-base:bookworm
IMAGE=localhost/fmnist-service:check
NAME="fmnist-check-$$"
MAX_IMAGE_MB="${MAX_IMAGE_MB:-500}"
READY_TIMEOUT_S=30
LOGS="$(mktemp -d)"

fail() {
    echo "container-check: FAILED: $*" >&2
    if podman container exists "$NAME"; then
        echo "--- service log (last 20 lines) ---" >&2
        podman logs --tail 20 "$NAME" >&2 || true
    fi
    exit 1
}
cleanup() {
    if podman container exists "$NAME"; then
        podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
    fi
    rm -rf "$LOGS"
}
trap cleanup EXIT

for tool in podman curl; do
    command -v "$tool" >/dev/null || fail "$tool is not installed"
done
[ -x "$PYTHON" ] || fail "$PYTHON not found (make venv)"

scripts/container_base_image.sh "$BASE_IMAGE"

# The build reaches the package index through this host's TLS setup: the CA bundle pip uses
# here is mounted into the build and named by PIP_CERT.
CA_BUNDLE="${PIP_CERT:-$("$PYTHON" -m pip config get global.cert 2>/dev/null || true)}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
build_args=(--build-arg "PYTHON_IMAGE=$BASE_IMAGE")
if [ -n "${PIP_INDEX_URL:-}" ]; then
    build_args+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
fi
if [ -f "$CA_BUNDLE" ]; then
    build_args+=(--volume "$CA_BUNDLE:/run/pip-ca.crt:ro" --build-arg PIP_CERT=/run/pip-ca.crt)
fi

echo "container-check: building $IMAGE"
start=$SECONDS
# Docker format: the OCI image format has no HEALTHCHECK.
podman build --format docker --layers "${build_args[@]}" -t "$IMAGE" . >"$LOGS/build.log" 2>&1 \
    || { tail -30 "$LOGS/build.log" >&2; fail "image build"; }
size_bytes=$(podman image inspect --format '{{.Size}}' "$IMAGE")
size_mb=$((size_bytes / 1000000))
echo "container-check: built in $((SECONDS - start)) s; image size ${size_mb} MB (limit ${MAX_IMAGE_MB} MB)"
[ "$size_mb" -le "$MAX_IMAGE_MB" ] || fail "image is ${size_mb} MB, over ${MAX_IMAGE_MB} MB"
if podman run --rm --health-interval disable --entrypoint python "$IMAGE" -c 'import torch' \
    >/dev/null 2>&1; then
    fail "the CPU image contains PyTorch"
fi

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PORT=$(free_port)
GRPC_PORT=$(free_port)
started_ms=$(($(date +%s%N) / 1000000))
# The HEALTHCHECK is run by hand below: podman's timers for it need systemd, and without it
# podman logs an error per timer (kept out of the output unless the run fails).
podman run -d --name "$NAME" --health-interval disable \
    --read-only --read-only-tmpfs=false --tmpfs /tmp:rw,size=64m,mode=1777 \
    --cap-drop ALL --security-opt no-new-privileges \
    -p "127.0.0.1:$PORT:8000" -p "127.0.0.1:$GRPC_PORT:8001" "$IMAGE" >/dev/null 2>"$LOGS/run.log" \
    || { cat "$LOGS/run.log" >&2; fail "podman run"; }
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do
    elapsed_ms=$(($(date +%s%N) / 1000000 - started_ms))
    [ "$(podman inspect --format '{{.State.Status}}' "$NAME")" = running ] || fail "the container exited"
    [ "$elapsed_ms" -lt $((READY_TIMEOUT_S * 1000)) ] || fail "/readyz not 200 within ${READY_TIMEOUT_S} s"
    sleep 0.1
done
elapsed_ms=$(($(date +%s%N) / 1000000 - started_ms))
echo "container-check: /readyz answered 200 $((elapsed_ms / 1000)).$((elapsed_ms % 1000 / 100)) s after podman run" \
    "(limit ${READY_TIMEOUT_S} s)"
"$PYTHON" scripts/container_probe.py "http://127.0.0.1:$PORT" --grpc "127.0.0.1:$GRPC_PORT" || fail "probe"

podman healthcheck run "$NAME" >/dev/null || fail "HEALTHCHECK did not pass"
health=$(podman inspect --format '{{.State.Health.Status}}' "$NAME")
[ "$health" = healthy ] || fail "health status is '$health'"
uid=$(podman exec "$NAME" awk '/^Uid:/ {print $2}' /proc/1/status)
[ "$uid" != 0 ] || fail "the server runs as root"
[ "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$NAME")" = true ] \
    || fail "root filesystem is writable"
if podman exec "$NAME" sh -c ': > /app/written' 2>/dev/null; then
    fail "a write to /app succeeded"
fi
echo "container-check: HEALTHCHECK $health; server uid $uid; root filesystem read-only"

start=$SECONDS
podman stop -t 30 "$NAME" >/dev/null 2>>"$LOGS/run.log"
code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
echo "container-check: stopped on SIGTERM in $((SECONDS - start)) s, exit code $code"
[ "$code" = 0 ] || fail "exit code $code after SIGTERM"

scripts/kube_play_check.sh "$IMAGE"
scripts/compose_check.sh
echo "container-check: passed"
