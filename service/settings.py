"""Service configuration, read from `FMNIST_*` environment variables."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

import ml
from ml.ood import FLAG_RATES

# What a browser sends in `Origin`: scheme, host and optional port, no path.
ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s?#]+", re.IGNORECASE)
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max ..."


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity (taskset, cpusets), capped by a cgroup
    CPU quota rounded up (a container's CPU limit, which leaves the affinity at every core of
    the node)."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, -(-int(quota) // int(period))))


class Settings(BaseSettings):
    """Every knob of the service; the README's settings table mirrors this class."""

    model_config = SettingsConfigDict(env_prefix="FMNIST_", extra="ignore")

    backend: Literal["auto", "onnxruntime", "torch"] = Field(
        "auto",
        description="what runs the models: auto is torch on CUDA and onnxruntime on CPU; torch "
        "on CPU needs the `torch` extra installed",
    )
    device: str = Field(
        "auto", description="auto (CUDA when there is an NVIDIA GPU and torch), cpu, cuda, cuda:N"
    )
    checkpoint_dir: Path = Field(Path("checkpoints"), description="folder of weights and cards")
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(ml.MODELS),
        description="models to load, comma-separated (default: every registered model)",
    )
    workers: int = Field(
        0,
        ge=0,
        description="server processes started by fmnist-serve, each with its own models; 0 is "
        "one per core this process may use",
    )
    threads: int = Field(
        0,
        ge=0,
        description="intra-op threads of the inference engine per model; 0 divides the cores "
        "among the workers (at least 1 each)",
    )
    batch_parts: int = Field(
        0,
        ge=0,
        description="parts a large batch (at least 32 images) is split into, run side by side "
        "in one worker (ONNX Runtime only); 0 is the cores divided by the engine's threads",
    )
    ood_flag_rate: Literal[FLAG_RATES] | None = Field(  # type: ignore[valid-type]
        None,
        description="the operating point of the out-of-distribution flag: the share of "
        "validation images (in distribution) a classifier flags, which picks its card's "
        "threshold; default the card's own (0.05)",
    )
    max_batch_size: int = Field(64, ge=1, description="most images in one forward pass")
    max_batch_wait_ms: float = Field(
        0.0,
        ge=0,
        description="how long a batch waits for more requests; 0 runs as soon as the model is "
        "free, and the requests that arrive meanwhile form the next batch",
    )
    max_queue: int = Field(
        1024, ge=1, description="images waiting per model and operation before 503 is answered"
    )
    max_upload_bytes: int = Field(10 * 2**20, ge=1, description="largest request body in bytes")
    max_image_pixels: int = Field(
        4096 * 4096, ge=1, description="largest image (width x height) that will be decoded"
    )
    max_images_per_request: int = Field(256, ge=1, description="most images in one request")
    max_request_pixels: int = Field(
        4096 * 4096,
        ge=1,
        description="most pixels (width x height, summed over its images) a request may ask to "
        "decode; with the decode threads, this bounds the memory decoding takes",
    )
    decode_threads: int = Field(
        0,
        ge=0,
        description="threads per worker that parse bodies and decode images (at most that many "
        "decodes at once); 0 is the engine's thread count",
    )
    max_in_flight: int = Field(
        48,
        ge=0,
        description="POST requests one worker serves at once, each counted once its body has "
        "arrived; more are answered 503 with Retry-After (before their body is read when every "
        "place is taken as they arrive); 0 is no limit",
    )
    body_timeout_s: float = Field(
        10.0,
        ge=0,
        description="a request body of which nothing arrives for this many seconds is answered "
        "408 and its connection closed; 0 is no limit",
    )
    head_timeout_s: float = Field(
        10.0,
        gt=0,
        description="seconds a connection has to send a whole request head (a new connection "
        "its first, from its first byte each later one) before it is answered 408 and closed "
        "(fmnist-serve)",
    )
    max_head_bytes: int = Field(
        16 * 1024,
        ge=1024,
        description="largest request head (request line and headers) in bytes; a larger one is "
        "answered 431 and its connection closed (fmnist-serve)",
    )
    max_headers: int = Field(
        100, ge=1, description="most header fields in a request head; more is 431 (fmnist-serve)"
    )
    max_connections: int = Field(
        2048,
        ge=1,
        description="open connections per worker; past it, idle keep-alive connections are "
        "closed to make room, and a new connection is refused 503 when none is idle "
        "(fmnist-serve)",
    )
    request_deadline_s: float = Field(
        30.0,
        ge=0,
        description="a request not answered within this many seconds is dropped and answered "
        "504 with Retry-After; 0 is no deadline",
    )
    api_key: SecretStr | None = Field(None, description="when set, required on every model route")
    grpc_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="the port of the Open Inference Protocol v2 over gRPC, served by every "
        "worker beside HTTP (fmnist-serve --grpc-port); unset, no gRPC; 0 picks a free port",
    )
    grpc_host: str = Field(
        "127.0.0.1",
        description="the interface gRPC listens on; fmnist-serve sets it to its --host",
    )
    log_format: Literal["text", "json"] = "text"
    access_log: bool = Field(
        False,
        description="a log line per request from fmnist-serve's uvicorn (the Prometheus "
        "metrics count every request either way)",
    )
    opentelemetry: bool = Field(
        False,
        description="FastAPI's built-in OpenTelemetry spans, metrics and logs, for a process "
        "with an OpenTelemetry provider configured; off, requests skip its per-request checks "
        "(the Prometheus /metrics are always on)",
    )
    instance_id: str = Field(
        default_factory=socket.gethostname, description="sent back in the X-Instance-Id header"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins whose browser pages may call the API, comma-separated "
        "(`https://app.example.com`, or `*` for any); empty turns CORS off: no CORS headers "
        "are sent and browsers refuse cross-origin calls",
    )
    cors_methods: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["GET", "HEAD", "POST"],
        description="methods allowed cross-origin, comma-separated",
    )
    cors_headers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["Authorization", "Content-Type", "X-API-Key", "X-Request-Id"],
        description="request headers allowed cross-origin, comma-separated",
    )

    @property
    def worker_processes(self) -> int:
        return self.workers or usable_cores()

    @property
    def engine_threads(self) -> int:
        return self.threads or max(1, usable_cores() // self.worker_processes)

    @property
    def engine_batch_parts(self) -> int:
        return self.batch_parts or max(1, usable_cores() // self.engine_threads)

    @property
    def decoder_threads(self) -> int:
        return self.decode_threads or self.engine_threads

    @field_validator("models", "cors_origins", "cors_methods", "cors_headers", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("models")
    @classmethod
    def _known_models(cls, names: list[str]) -> list[str]:
        if not names:
            raise ValueError("at least one model must be loaded")
        unknown = [name for name in names if name not in ml.MODELS]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; known models: {', '.join(ml.MODELS)}")
        return list(dict.fromkeys(names))

    @field_validator("cors_origins")
    @classmethod
    def _bare_origins(cls, origins: list[str]) -> list[str]:
        """A browser sends its origin as `scheme://host[:port]`, nothing after: one written with
        a path or a trailing slash would never match, so it is refused rather than ignored."""
        wrong = [origin for origin in origins if origin != "*" and not ORIGIN.fullmatch(origin)]
        if wrong:
            raise ValueError(f"not an origin (scheme://host[:port], no path): {wrong}")
        return origins

    @field_validator("cors_methods")
    @classmethod
    def _upper_methods(cls, methods: list[str]) -> list[str]:
        return [method.upper() for method in methods]

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        return None if value == "" else value

    # Draining on SIGTERM (service/drain.py).
    drain_seconds: float = Field(
        8.0,
        ge=1,
        description="after SIGTERM, the most time the process takes to exit: requests already "
        "received are answered within it (those still waiting for a model near its end get "
        "503); fits Docker's default 10 s stop timeout",
    )
    drain_delay_seconds: float = Field(
        0.0,
        ge=0,
        description="part of the drain time during which readiness already fails but the "
        "listener still accepts and serves, so load balancers that probe /readyz stop sending "
        "before connections are refused; 0 closes the listener at once",
    )
