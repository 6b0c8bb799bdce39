"""`fmnist-serve`: run the service under uvicorn, with logs in FMNIST_LOG_FORMAT.

Every other setting comes from `FMNIST_*` environment variables (see `service.settings`).
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from service.logs import logging_config
from service.settings import Settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fmnist-serve",
        description="Serve the Fashion-MNIST models over HTTP. Configure with FMNIST_* variables.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--workers",
        type=int,
        help="server processes, each with its own models (default: FMNIST_WORKERS, else one "
        "per core); the engine's threads per model are the cores divided among them",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.workers is not None:
        os.environ["FMNIST_WORKERS"] = str(args.workers)  # the workers' settings see it too
    settings = Settings()  # fail here, before forking workers, on a bad variable
    uvicorn.run(
        "service.app:app",
        host=args.host,
        port=args.port,
        workers=settings.worker_processes,
        log_config=logging_config(settings.log_format),
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
