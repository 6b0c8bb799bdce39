"""`fmnist-serve`: run the service under uvicorn, with logs in FMNIST_LOG_FORMAT, and with
`--grpc-port` (FMNIST_GRPC_PORT) the v2 protocol over gRPC in every worker (`service.grpc`).

Every other setting comes from `FMNIST_*` environment variables (see `service.settings`).
One worker runs in this process; several run under `Supervisor`, uvicorn's supervisor with what
draining on SIGTERM needs (see `service.drain` for what each worker does) and a listening socket
of its own for each worker.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import socket
import sys
import time
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from service.http_protocol import HeadLimits, LimitedHttpToolsProtocol
from service.logs import logging_config
from service.settings import Settings

APP = "service.app:app"
EXIT_GRACE_S = 5.0  # past the drain time, before the supervisor kills a worker still running
SIGNAL_POLL_S = 0.05  # uvicorn's supervisor looks at its signals every 0.5 s
HEALTH_CHECK_EVERY = 10  # polls between two checks that the workers are alive (0.5 s)

log = logging.getLogger("uvicorn.error")


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor (it restarts a worker that dies), changed in two ways.

    Each worker gets a listening socket of its own, all bound to the same address with
    SO_REUSEPORT, so the kernel spreads new connections evenly over the workers. On one shared
    socket, whichever worker woke first accepted a burst of them: 64 keep-alive connections
    opened at once were split 6/58 or 12/52 between two workers, and the busier one set every
    latency. A worker's socket belongs to its slot: a replacement takes over the socket (and
    the connections waiting in it) of the worker it replaces.

    For draining: on SIGTERM or SIGINT it passes SIGTERM on to the workers within 50 ms rather
    than 500 ms, so their readiness fails at once; it closes its own copies of the listening
    sockets, which uvicorn's keeps open to the end, so that once the workers have closed theirs
    new connections are refused (with them open, the kernel accepted them, and reset them when
    the supervisor exited); and it kills a worker still running past the drain time."""

    def __init__(self, config: uvicorn.Config, drain_s: float) -> None:
        sockets = listening_sockets(config.host, config.port, config.workers, config.backlog)
        super().__init__(config, sockets)
        self.drain_s = drain_s

    def init_processes(self) -> None:
        for listener in self.sockets:
            self.processes.append(self._start_worker(listener))

    def keep_subprocess_alive(self) -> None:
        """uvicorn's, which replaces a dead worker with one on every socket; here the
        replacement gets the socket of the worker it replaces."""
        if self.should_exit.is_set():
            return
        for slot, worker in enumerate(self.processes):
            if worker.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            worker.kill()
            worker.join()
            if worker.exitcode == STARTUP_FAILURE:
                log.error("Child process [%s] failed to start, stopping", worker.pid)
                self.should_exit.set()
                return
            log.info("Child process [%s] died; starting another", worker.pid)
            self.processes[slot] = self._start_worker(self.sockets[slot])

    def restart_all(self) -> None:
        """SIGHUP: each worker replaced in turn, the new one ready on the slot's socket before
        the old one stops."""
        for slot, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._start_worker(self.sockets[slot])
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                log.error("New child process [%s] was not ready in time; restart aborted", new.pid)
                return
            old.terminate()
            old.join()
            self.processes[slot] = new

    def handle_ttin(self) -> None:
        """SIGTTIN: one more worker, on a socket of its own."""
        log.info("Received SIGTTIN, adding a worker")
        port = self.sockets[0].getsockname()[1]
        try:
            self.sockets.append(shared_socket(self.config.host, port, self.config.backlog))
        except OSError as exc:
            log.error("cannot open another socket on port %d: %s", port, exc.strerror)
            return
        self.processes.append(self._start_worker(self.sockets[-1]))
        self.processes_num += 1

    def handle_ttou(self) -> None:
        """SIGTTOU: one worker fewer (never none); its socket closes once it has drained."""
        if self.processes_num <= 1:
            log.info("Received SIGTTOU, but one worker is the least")
            return
        log.info("Received SIGTTOU, stopping a worker")
        self.processes_num -= 1
        worker, listener = self.processes.pop(), self.sockets.pop()
        listener.close()
        worker.terminate()
        worker.join()

    def _start_worker(self, listener: socket.socket) -> Process:
        worker = Process(self.config, [listener])
        worker.start()
        return worker

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


def listening_sockets(host: str, port: int, count: int, backlog: int) -> list[socket.socket]:
    """`count` sockets listening on `host:port` together (SO_REUSEPORT), inherited by the
    worker processes. The port is first bound alone, without SO_REUSEPORT: that fails while
    any other process listens on it, which a socket with SO_REUSEPORT would silently share
    with another server of this user; it also resolves port 0 to the port the kernel chose."""
    port = free_port_or_exit(host, port)
    try:
        return [shared_socket(host, port, backlog) for _ in range(count)]
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc.strerror)
        sys.exit(STARTUP_FAILURE)


def free_port_or_exit(host: str, port: int) -> int:
    """`port` (the one the kernel picks, for 0) once binding it alone has shown that no other
    process listens on it; exits with uvicorn's start-up failure code otherwise."""
    try:
        with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            return probe.getsockname()[1]
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc.strerror)
        sys.exit(STARTUP_FAILURE)


def shared_socket(host: str, port: int, backlog: int) -> socket.socket:
    """One more socket listening on `host:port` with SO_REUSEPORT, inheritable."""
    listener = socket.socket(_family(host), socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    listener.listen(backlog)
    listener.set_inheritable(True)
    return listener


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


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
    parser.add_argument(
        "--grpc-port",
        type=int,
        help="serve the Open Inference Protocol v2 over gRPC on this port too, on --host, in "
        "every worker (default: FMNIST_GRPC_PORT; unset, no gRPC; 0: a free port)",
    )
    return parser.parse_args(argv)


def serve(app: str, drain_s: float, **options: Any) -> None:
    """What `uvicorn.run(app, **options)` does for an import string, with `Supervisor` in place
    of uvicorn's for several workers. Each worker bounds its graceful shutdown by the drain time
    itself (`service.drain`)."""
    config = uvicorn.Config(app, **options)
    if config.workers > 1:
        Supervisor(config, drain_s=drain_s).run()
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
    if args.grpc_port is not None:
        os.environ["FMNIST_GRPC_PORT"] = str(args.grpc_port)
    settings = Settings()  # fail here, before forking workers, on a bad variable
    if settings.grpc_port is not None:
        # Every worker binds it with SO_REUSEPORT, which would silently share it with another
        # server of this user: check here, once, that no one else listens on it.
        grpc_port = free_port_or_exit(args.host, settings.grpc_port)
        os.environ["FMNIST_GRPC_PORT"] = str(grpc_port)
        os.environ["FMNIST_GRPC_HOST"] = args.host
    serve(
        APP,
        drain_s=settings.drain_seconds,
        host=args.host,
        port=args.port,
        workers=settings.worker_processes,
        log_config=logging_config(settings.log_format),
        access_log=settings.access_log,
        http=functools.partial(LimitedHttpToolsProtocol, limits=head_limits(settings)),
    )


def head_limits(settings: Settings) -> HeadLimits:
    return HeadLimits(
        head_timeout_s=settings.head_timeout_s,
        max_head_bytes=settings.max_head_bytes,
        max_headers=settings.max_headers,
        max_connections=settings.max_connections,
    )


if __name__ == "__main__":
    main()
