# syntax=docker/dockerfile:1
# The Fashion-MNIST model service, weights baked in.
#
#   docker build -t fmnist-service .                                    # CPU-only PyTorch (small)
#   docker build --build-arg TORCH_FLAVOUR=cu130 -t fmnist-service:gpu .   # CUDA build of PyTorch
#   docker run -p 8000:8000 fmnist-service
#
# Stages: `deps` (PyTorch + third-party dependencies, rebuilt only when pyproject.toml changes),
# `wheel` (the project's own code), `runtime` (what ships: a venv, the code, the checkpoints).

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS deps
# A wheel index of download.pytorch.org: `cpu`, or a CUDA build such as `cu130`.
ARG TORCH_FLAVOUR=cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# torch/torchvision first and alone, from the flavour's index (same order as the Makefile); the
# other dependencies then resolve against the installed build ("2.14.1+cpu" satisfies "==2.14.1").
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url "https://download.pytorch.org/whl/${TORCH_FLAVOUR}" \
        torch==2.14.1 torchvision==0.29.1
# Only pyproject.toml here, so editing the code does not reinstall the dependencies.
COPY pyproject.toml /tmp/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

FROM deps AS wheel
WORKDIR /src
# README.md* : the readme is optional for the build, the glob keeps COPY from failing without it.
COPY pyproject.toml README.md* ./
COPY ml ./ml
COPY service ./service
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    MPLCONFIGDIR=/tmp/matplotlib \
    FMNIST_CHECKPOINT_DIR=/app/checkpoints \
    FMNIST_DEVICE=auto \
    FMNIST_WORKERS=1
RUN useradd --create-home --uid 10001 --user-group app
WORKDIR /app
# Largest layer first: it only changes with the dependencies.
COPY --from=deps /opt/venv /opt/venv
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-deps --no-cache-dir --disable-pip-version-check /wheels/*.whl
COPY checkpoints ./checkpoints
COPY deploy/healthcheck.py ./healthcheck.py
# Numeric, so runtimes that check for a non-root user (runAsNonRoot) can verify it.
USER 10001:10001
EXPOSE 8000
# Ready means models loaded and warmed; loading takes a few seconds, hence the start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/app/healthcheck.py"]
# One uvicorn process per container by default (scale with replicas); FMNIST_WORKERS > 1 runs
# that many worker processes. `exec` makes uvicorn PID 1, so it gets SIGTERM from `docker stop`.
CMD ["sh", "-c", "exec uvicorn service.app:app --host 0.0.0.0 --port 8000 --workers \"$FMNIST_WORKERS\""]
