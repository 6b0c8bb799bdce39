#!/usr/bin/env bash
# docker-compose.yml run with podman-compose on a built image: the `api` replicas behind the
# `lb` nginx all answer, and stopping one of them under load loses no request
# (scripts/compose_probe.py). The nginx image is Debian's nginx on the local base image
# (deploy/podman/nginx.Containerfile) and deploy/podman/compose.override.yml names both images.
#
#   scripts/compose_check.sh        (run by scripts/container_check.sh, after the image build)
set -euo pipefail
cd "$(dirname "$0")/.."

export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}"
PYTHON="${PYTHON:-.venv/bin/python}"
PROJECT="fmnist-check-$$"
READY_TIMEOUT_S=60

fail() {
    echo "compose-check: FAILED: $*" >&2
    exit 1
}
compose() {
    FMNIST_PORT="$PORT" "$PYTHON" -m podman_compose -p "$PROJECT" \
        -f docker-compose.yml -f deploy/podman/compose.override.yml "$@"
}
cleanup() {
    compose down -t 5 >/dev/null 2>&1 || true
}

"$PYTHON" -c 'import podman_compose' 2>/dev/null || fail "podman-compose is not installed (make venv)"
build_log="$(mktemp)"
podman build --format docker --build-arg BASE_IMAGE=localhost/fmnist-base:bookworm \
    -f deploy/podman/nginx.Containerfile -t localhost/fmnist-nginx:check deploy/podman \
    >"$build_log" 2>&1 || { tail -20 "$build_log" >&2; fail "nginx image build"; }
rm -f "$build_log"

PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trap cleanup EXIT
compose up -d >/dev/null 2>&1 || fail "podman-compose up"
start=$SECONDS
replicas=$(podman ps --format '{{.Names}}' --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=api")
for replica in $replicas; do
    until podman healthcheck run "$replica" >/dev/null 2>&1; do
        [ $((SECONDS - start)) -lt "$READY_TIMEOUT_S" ] || fail "$replica not healthy in ${READY_TIMEOUT_S} s"
        sleep 1
    done
done
echo "compose-check: $(echo "$replicas" | wc -w) api replicas healthy after $((SECONDS - start)) s"
first=$(echo "$replicas" | head -1)
"$PYTHON" scripts/compose_probe.py "http://127.0.0.1:$PORT" --replicas "$(echo "$replicas" | wc -w)" \
    --stop "podman stop -t 30 $first" || fail "probe"
