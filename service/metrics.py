"""Prometheus metrics, in a registry of their own per app (so several apps can coexist in a
process, as in tests). With several uvicorn workers each process counts for itself. Requests
are counted per protocol (`fmnist_http_*`, `fmnist_grpc_*`); batches mix both."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fmnist_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fmnist_http_request_duration_seconds",
            "Time from request start to the end of the response, by route template and status",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # The same for the v2 protocol over gRPC (service/grpc): the protocol is the metric's
        # name, and gRPC's own vocabulary its labels (the method, the status code's name).
        self.rpcs = Counter(
            "fmnist_grpc_requests",
            "gRPC calls answered, by method and status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.rpc_latency = Histogram(
            "fmnist_grpc_request_duration_seconds",
            "Time from a gRPC call's start to its answer, by method and status code",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            "fmnist_inference_seconds",
            "Time of one batched model call, by model and operation",
            ["model", "op"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "fmnist_batch_size",
            "Images per batched model call, by model and operation",
            ["model", "op"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "fmnist_queue_depth",
            "Images waiting for a batch, by model and operation",
            ["model", "op"],
            registry=self.registry,
        )

        self._children: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        count, latency = self._labelled((self.requests, self.latency), method, route, str(status))
        count.inc()
        latency.observe(seconds)

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        count, latency = self._labelled((self.rpcs, self.rpc_latency), method, code)
        count.inc()
        latency.observe(seconds)

    def observe_batch(self, model: str, op: str, size: int, seconds: float) -> None:
        sizes, durations = self._labelled((self.batch_size, self.inference), model, op)
        sizes.observe(size)
        durations.observe(seconds)

    def _labelled(self, metrics: tuple[Any, ...], *labels: str) -> tuple[Any, ...]:
        """`metric.labels(*labels)` for each of `metrics`, looked up once per label set:
        labels() takes a lock and checks its arguments on every call, and route templates,
        methods, statuses, models and operations are few."""
        key = (*metrics, *labels)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = tuple(metric.labels(*labels) for metric in metrics)
        return children

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
