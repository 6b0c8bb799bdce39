# syntax=docker/dockerfile:1
# The Fashion-MNIST model service, weights baked in.
#
#   docker build -t fmnist-service .                                          # CPU: ONNX Runtime, no PyTorch
#   docker build --build-arg TORCH_FLAVOUR=cu130 -t fmnist-service:gpu .      # + PyTorch's CUDA build
#   docker run -p 8000:8000 -p 8001:8001 fmnist-service   # HTTP, and gRPC on 8001
#
# Stages: `deps` (third-party dependencies, rebuilt only when pyproject.toml changes), `wheel`
# (the project's own code), `runtime` (what ships: a venv, the code, the checkpoints).
#
# Build arguments for other environments:
#   PYTHON_IMAGE    base image of every stage (any Debian-like image with Python 3.11 and venv)
#   PIP_INDEX_URL   package index (a mirror or proxy of PyPI)
#   PIP_CERT        CA bundle for the index, e.g. behind a TLS-inspecting proxy; a path in the
#                   build container (podman: `-v ca.crt:/run/ca.crt:ro`; Docker: part of PYTHON_IMAGE)

ARG PYTHON_VERSION=3.11
ARG PYTHON_IMAGE=python:${PYTHON_VERSION}-slim

FROM ${PYTHON_IMAGE} AS deps
# Empty: no PyTorch (CPU serving runs on ONNX Runtime). A wheel index of download.pytorch.org
# (`cu130`, or `cpu` for the torch backend on a CPU): PyTorch from there and the `torch` extra.
ARG TORCH_FLAVOUR=
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# torch first and alone, from the flavour's index (same order as the Makefile); the other
# dependencies then resolve against the installed build ("2.14.1+cu130" satisfies "==2.14.1").
RUN --mount=type=cache,target=/root/.cache/pip \
    if [ -n "$TORCH_FLAVOUR" ]; then \
        pip install --index-url "https://download.pytorch.org/whl/${TORCH_FLAVOUR}" torch==2.14.1; \
    fi
# Only pyproject.toml here, so editing the code does not reinstall the dependencies.
COPY pyproject.toml /tmp/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import sys, tomllib; p = tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + (p['optional-dependencies']['torch'] if sys.argv[1] else [])))" \
        "$TORCH_FLAVOUR" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

FROM deps AS wheel
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_CERT
WORKDIR /src
# README.md* : the readme is optional for the build, the glob keeps COPY from failing without it.
COPY pyproject.toml README.md* ./
COPY ml ./ml
COPY service ./service
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    MPLCONFIGDIR=/tmp/matplotlib \
    FMNIST_CHECKPOINT_DIR=/app/checkpoints \
    FMNIST_DEVICE=auto \
    FMNIST_WORKERS=1 \
    FMNIST_GRPC_PORT=8001
RUN useradd --create-home --uid 10001 --user-group app
WORKDIR /app
# Largest layer first: it only changes with the dependencies.
COPY --from=deps /opt/venv /opt/venv
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-deps --no-cache-dir --disable-pip-version-check /wheels/*.whl
COPY checkpoints ./checkpoints
COPY deploy/healthcheck.py ./healthcheck.py
# Numeric, so runtimes that check for a non-root user (runAsNonRoot) can verify it. Nothing in
# the image needs writing at run time except /tmp (matplotlib's cache), so the root filesystem
# can be mounted read-only with a tmpfs on /tmp.
USER 10001:10001
# HTTP, and the Open Inference Protocol v2 over gRPC (FMNIST_GRPC_PORT).
EXPOSE 8000 8001
# Ready means models loaded and warmed; loading takes a few seconds, hence the start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/app/healthcheck.py"]
# One server process per container by default (scale with replicas); FMNIST_WORKERS > 1 runs
# that many worker processes under fmnist-serve's supervisor, which passes SIGTERM on to them and
# closes its listening socket, so a draining container refuses new connections. fmnist-serve is
# PID 1 and gets SIGTERM from `docker stop` itself.
CMD ["fmnist-serve", "--host", "0.0.0.0", "--port", "8000"]
