"""`fmnist-serve`: run the service under uvicorn, with logs in FMNIST_LOG_FORMAT.

Every other setting comes from `FMNIST_*` environment variables (see `service.settings`).
One worker runs in this process; several run under `Supervisor`, uvicorn's supervisor with what
draining on SIGTERM needs (see `service.drain` for what each worker does).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from socket import socket
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from service.logs import logging_config
from service.settings import Settings

APP = "service.app:app"
EXIT_GRACE_S = 5.0  # past the drain time, before the supervisor kills a worker still running
SIGNAL_POLL_S = 0.05  # uvicorn's supervisor looks at its signals every 0.5 s
HEALTH_CHECK_EVERY = 10  # polls between two checks that the workers are alive (0.5 s)

log = logging.getLogger("uvicorn.error")


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor (it restarts a worker that dies), changed where draining needs
    it. On SIGTERM or SIGINT it passes SIGTERM on to the workers within 50 ms rather than
    500 ms, so their readiness fails at once; it closes its own copy of the listening socket,
    which uvicorn's keeps open to the end, so that once the workers have closed theirs new
    connections are refused (with it open, the kernel accepted them, and reset them when the
    supervisor exited); and it kills a worker still running past the drain time."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket], drain_s: float) -> None:
        super().__init__(config, sockets)
        self.drain_s = drain_s

    def run(self) -> None:
        log.info("Started parent process [%d]", os.getpid())
        self.init_processes()
        polls = 0
        while not self.should_exit.wait(SIGNAL_POLL_S):
            self.handle_signals()
            polls += 1
            if polls % HEALTH_CHECK_EVERY == 0:
                self.keep_subprocess_alive()
        self.stop_workers()
        log.info("Stopping parent process [%d]", os.getpid())

    def stop_workers(self) -> None:
        for listener in self.sockets:
            listener.close()
        self.terminate_all()
        deadline = time.monotonic() + self.drain_s + EXIT_GRACE_S
        for worker in self.processes:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.error("Child process [%s] outlived the drain time; killing it", worker.pid)
                worker.kill()
            worker.join()


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


def serve(app: str, drain_s: float, **options: Any) -> None:
    """What `uvicorn.run(app, **options)` does for an import string, with `Supervisor` in place
    of uvicorn's for several workers. Each worker bounds its graceful shutdown by the drain time
    itself (`service.drain`)."""
    config = uvicorn.Config(app, **options)
    if config.workers > 1:
        Supervisor(config, sockets=[config.bind_socket()], drain_s=drain_s).run()
        return
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it handled
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.workers is not None:
        os.environ["FMNIST_WORKERS"] = str(args.workers)  # the workers' settings see it too
    settings = Settings()  # fail here, before forking workers, on a bad variable
    serve(
        APP,
        drain_s=settings.drain_seconds,
        host=args.host,
        port=args.port,
        workers=settings.worker_processes,
        log_config=logging_config(settings.log_format),
        access_log=settings.access_log,
    )


if __name__ == "__main__":
    main()
