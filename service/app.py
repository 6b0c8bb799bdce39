"""The app factory: `create_app(settings)`; `app` is the one `uvicorn service.app:app` serves.

Creating the app loads nothing: models are loaded, verified and warmed in the lifespan, so
importing this module is cheap and start-up errors surface when the server starts.
"""

from __future__ import annotations

import gc
import logging.config
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service.admission import ConcurrencyLimit
from service.dependencies import require_api_key
from service.drain import Drain
from service.errors import install_error_handlers
from service.lifetime import RequestLifetime
from service.logs import logging_config
from service.metrics import Metrics
from service.middleware import BodyLimits, RequestMetrics, ResponseHeaders
from service.routes import PROTECTED_ROUTERS, PUBLIC_ROUTERS
from service.runtime import Runtime
from service.settings import Settings
from service.web import install_web

if TYPE_CHECKING:
    from service.grpc.server import GrpcServer

DESCRIPTION = """\
LeNet-5, MyNet and a convolutional VAE trained on Fashion-MNIST.

Image endpoints take images as multipart `file` fields, a raw image body, or JSON
(`{"images": [base64, ...]}` or `{"pixels": [28x28 array, ...]}`). Any format, size or mode
Pillow reads is converted to a light-on-dark 28x28 grayscale image. Responses are JSON, or PNG
with `Accept: image/png` or `?format=png`. Errors are always
`{"error": {"code": "...", "message": "..."}}`.
"""

# Response headers a cross-origin page may read, beyond the few that browsers always expose.
CORS_EXPOSED_HEADERS = ("Retry-After", "X-Instance-Id", "X-Request-Id")
TELEMETRY_OFF = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # The service's own loggers; `fmnist-serve` formats uvicorn's the same way.
    logging.config.dictConfig(logging_config(settings.log_format, loggers=("service",)))
    metrics = Metrics()
    runtime = Runtime(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        grpc_server = await start_grpc(runtime, metrics, app.version)
        # What start-up allocated (models, schemas, modules) lives as long as the process: keep
        # it out of the garbage collector's scans, which then only look at request garbage.
        gc.freeze()
        # SIGTERM from here on drains (service/drain.py) instead of cutting requests off.
        listeners = [grpc_server] if grpc_server else []
        drain = Drain(runtime, settings.drain_seconds, settings.drain_delay_seconds, listeners)
        drain.install()
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.closed(drain.grace_s())
            drain.uninstall()
            await runtime.stop()

    app = FastAPI(
        title="Fashion-MNIST model service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Replaced by install_web's, which serve Swagger UI and ReDoc without a CDN.
        docs_url=None,
        redoc_url=None,
        telemetry=None if settings.opentelemetry else TELEMETRY_OFF,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    install_error_handlers(app)
    # Without a key there is nothing to check: no per-request cost, and the OpenAPI document
    # asks for no credentials.
    protected = [Depends(require_api_key)] if settings.api_key else []
    for router in PROTECTED_ROUTERS:
        app.include_router(router, dependencies=protected)
    for router in PUBLIC_ROUTERS:
        app.include_router(router)
    install_web(app)
    # Last added runs first: the response headers wrap everything, metrics see every status,
    # CORS preflights included. No origins, no CORS middleware: browsers then refuse
    # cross-origin calls, and same-origin requests pay nothing for it.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=settings.cors_methods,
            allow_headers=settings.cors_headers,
            expose_headers=CORS_EXPOSED_HEADERS,
        )
    # The deadline counts from the moment the body has arrived: how long a client takes to
    # send it is bounded by the body's idle timeout, and costs the service nothing meanwhile.
    app.add_middleware(RequestLifetime, deadline_s=settings.request_deadline_s or None)
    if settings.max_in_flight:
        app.add_middleware(ConcurrencyLimit, max_in_flight=settings.max_in_flight)
    app.add_middleware(
        BodyLimits,
        max_bytes=settings.max_upload_bytes,
        idle_s=settings.body_timeout_s or None,
    )
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(ResponseHeaders, instance_id=settings.instance_id)
    return app


async def start_grpc(runtime: Runtime, metrics: Metrics, version: str) -> GrpcServer | None:
    """The v2 protocol over gRPC on FMNIST_GRPC_PORT, when set. Imported only then: the
    protocol's messages (package `inference`) then take their names in protobuf's process-wide
    registry, where a client library's copies of them (tritonclient, KServe) would clash."""
    if runtime.settings.grpc_port is None:
        return None
    from service.grpc.server import GrpcServer

    server = GrpcServer(runtime, metrics, version)
    await server.start()
    return server


app = create_app()
