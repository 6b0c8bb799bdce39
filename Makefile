# The two README commands are `make run` and `make test`; both create the environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
GRPC_PORT ?= 8001

.PHONY: run test venv system-deps lint format grpc-stubs train figures bench docker docker-gpu container-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Two installs into one environment. `make run` needs only CPU serving (ONNX Runtime, no
# PyTorch); `make test` adds training, the torch backend and the test tools. torch/torchvision
# go first and alone, so pip then resolves the rest against the pinned build.
$(VENV)/.serve: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q -e ./client
	touch $@ $(VENV)/.serve

venv: $(VENV)/.dev

# The real dataset (the shipped checkpoints are re-evaluated on it), nginx (load-balancer test)
# and Chromium with its driver (browser tests of the page), from Debian packages when they are
# missing and apt-get can be used.
system-deps:
	@if [ -d /usr/share/datasets/fashion-mnist ] && [ -x /usr/sbin/nginx ] \
	  && command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi; \
	if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    dataset-fashion-mnist nginx chromium chromium-driver >/dev/null; \
	else \
	  echo "note: install the Debian packages dataset-fashion-mnist, nginx, chromium and" \
	    "chromium-driver for the full suite"; \
	fi

run: $(VENV)/.serve
	$(BIN)/fmnist-serve --host $(HOST) --port $(PORT) --grpc-port $(GRPC_PORT)

test: venv system-deps
	$(BIN)/ruff check ml service scripts tests
	$(BIN)/ruff format --check ml service scripts tests
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check ml service scripts tests

format: venv
	$(BIN)/ruff format ml service scripts tests
	$(BIN)/ruff check --fix ml service scripts tests

# The gRPC stubs, from the protocol's definition (tests/v2/test_grpc_stubs.py checks that the
# committed ones are what this makes).
grpc-stubs: venv
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \
	  service/grpc/grpc_predict_v2.proto

train: venv
	$(BIN)/fmnist-train --model all

figures: venv
	$(BIN)/python scripts/make_figures.py

bench: venv
	$(BIN)/python scripts/bench_serve.py

docker:
	docker build -t fmnist-service .

docker-gpu:
	docker build --build-arg TORCH_FLAVOUR=cu130 -t fmnist-service:gpu .

# The CPU image built with podman from the working tree and run as in production, then the
# Kubernetes Deployment played on it (scripts/container_check.sh says what is checked).
container-check: venv system-deps
	scripts/container_check.sh

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
