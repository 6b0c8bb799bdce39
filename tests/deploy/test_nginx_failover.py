"""The compose load-balancing topology without Docker: real nginx in front of two real replicas.

Two `uvicorn service.app:app` processes on free loopback ports (distinct FMNIST_INSTANCE_ID) sit
behind a foreground nginx that includes deploy/nginx/fmnist.conf, the file the compose `lb`
service mounts, with only its `listen` and upstream `server` lines rewritten to loopback ports.
Requests go through nginx; both replicas must serve some; one replica is then killed mid-run and
every request started after the failover window must still succeed, served by the survivor.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.live_service import (
    CHECKPOINT_DIR,
    REPO,
    STARTUP_TIMEOUT_S,
    LiveService,
    free_port,
    wait_for_ok,
)

SITE_CONF = REPO / "deploy" / "nginx" / "fmnist.conf"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)

LISTEN_RE = re.compile(r"^(?P<indent>[ \t]*)listen\s+80\s*;", re.MULTILINE)
UPSTREAM_RE = re.compile(r"^(?P<indent>[ \t]*)server\s+api:8000(?P<params>[^;]*);", re.MULTILINE)

FAILOVER_WINDOW_S = 2.0  # requests started this long after the kill must all succeed
BEFORE_KILL = 120  # requests completed before one replica is killed
AFTER_WINDOW = 120  # requests started after the window, needed before the run stops
MAX_REQUESTS = 2000  # hard bounds on the load, whatever happens
LOAD_DEADLINE_S = 40.0
CONCURRENCY = 6

needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (CI: apt nginx)")
needs_checkpoint = pytest.mark.skipif(
    not (CHECKPOINT_DIR / "lenet.safetensors").exists(),
    reason=f"no LeNet checkpoint in {CHECKPOINT_DIR}",
)


def render_site(text: str, listen_port: int, backend_ports: list[int]) -> str:
    """The compose site config with loopback ports: one upstream line per backend, same params."""
    assert len(LISTEN_RE.findall(text)) == 1, "fmnist.conf needs exactly one `listen 80;` line"
    assert len(UPSTREAM_RE.findall(text)) == 1, "fmnist.conf needs exactly one `server api:8000`"
    text = LISTEN_RE.sub(lambda m: f"{m['indent']}listen 127.0.0.1:{listen_port};", text)
    return UPSTREAM_RE.sub(
        lambda m: "\n".join(
            f"{m['indent']}server 127.0.0.1:{port}{m['params']};" for port in backend_ports
        ),
        text,
    )


def main_conf(workdir: Path, site: Path) -> str:
    """What the nginx image's own nginx.conf provides around conf.d/, for a throwaway prefix."""
    return f"""\
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log info;
events {{ worker_connections 512; }}
http {{
    log_format upstreams '$status $request_time upstream=$upstream_addr:$upstream_status';
    access_log {workdir}/access.log upstreams;
    client_body_temp_path {workdir}/client_body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    include {site};
}}
"""


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path.name} missing)"
    return f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def shirt_png() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(image).rectangle((6, 4, 21, 25), fill=200)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def check_body_limit(url: str) -> None:
    """nginx passes a body of exactly the service's limit and refuses one byte more itself."""
    limit = 10 * 2**20  # the service's FMNIST_MAX_UPLOAD_BYTES default
    headers = {"Content-Type": "image/png"}
    at_limit = httpx.post(f"{url}/classify", content=b"\0" * limit, headers=headers, timeout=30)
    assert "x-instance-id" in at_limit.headers, at_limit.text  # a replica answered
    over = httpx.post(f"{url}/classify", content=b"\0" * (limit + 1), headers=headers, timeout=30)
    assert over.status_code == 413 and "x-instance-id" not in over.headers
    assert over.json()["error"]["code"] == "payload_too_large"


@dataclass
class Result:
    started: float
    finished: float
    status: int | None  # None: transport error
    instance: str | None
    error: str = ""


@dataclass
class Topology:
    url: str
    replicas: dict[str, LiveService]
    workdir: Path

    def logs(self) -> str:
        names = ["error.log", "nginx.out", *(f"{name}.log" for name in self.replicas)]
        return "\n".join(tail(self.workdir / name) for name in names)


@pytest.fixture
def topology():
    # mkdtemp + 0755: when the tests run as root, nginx workers run as `nobody` and must be able
    # to reach the temp folders inside this directory.
    workdir = Path(tempfile.mkdtemp(prefix="fmnist-lb-"))
    workdir.chmod(0o755)
    replicas: dict[str, LiveService] = {}
    nginx: subprocess.Popen | None = None
    try:
        for name in ("replica-a", "replica-b"):
            env = {
                "FMNIST_INSTANCE_ID": name,
                "FMNIST_MODELS": "lenet",  # the smallest model is enough to exercise the topology
                "FMNIST_THREADS": "1",
                "OMP_NUM_THREADS": "1",
            }
            replicas[name] = LiveService(workdir / f"{name}.log", env, "--no-access-log")

        listen = free_port()
        site = workdir / "fmnist.conf"
        ports = [replica.port for replica in replicas.values()]
        site.write_text(render_site(SITE_CONF.read_text(), listen, ports))
        (workdir / "nginx.conf").write_text(main_conf(workdir, site))
        out = open(workdir / "nginx.out", "wb")  # noqa: SIM115 - closed with the process
        nginx = subprocess.Popen(
            [NGINX, "-p", str(workdir), "-c", str(workdir / "nginx.conf")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()

        topo = Topology(f"http://127.0.0.1:{listen}", replicas, workdir)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        for replica in replicas.values():
            replica.wait_until_ready(deadline)
        wait_for_ok(f"{topo.url}/nginx-health", deadline, [nginx], topo.logs)
        yield topo
    finally:
        if nginx is not None:
            stop(nginx)
        for replica in replicas.values():
            replica.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_site_config_has_one_substitution_point_each():
    text = SITE_CONF.read_text()
    rendered = render_site(text, 18080, [18001, 18002])
    assert "listen 127.0.0.1:18080;" in rendered
    params = UPSTREAM_RE.search(text)["params"]
    assert "max_fails=" in params and "fail_timeout=" in params
    for port in (18001, 18002):
        assert f"server 127.0.0.1:{port}{params};" in rendered
    assert not UPSTREAM_RE.search(rendered) and not LISTEN_RE.search(rendered)


@needs_nginx
def test_nginx_accepts_the_site_config():
    workdir = Path(tempfile.mkdtemp(prefix="fmnist-lb-"))
    try:
        site = workdir / "fmnist.conf"
        site.write_text(render_site(SITE_CONF.read_text(), free_port(), [free_port()]))
        (workdir / "nginx.conf").write_text(main_conf(workdir, site))
        check = subprocess.run(
            [NGINX, "-t", "-p", str(workdir), "-c", str(workdir / "nginx.conf")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0, check.stderr
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@needs_nginx
@needs_checkpoint
def test_two_replicas_behind_nginx_fail_over(topology):
    check_body_limit(topology.url)
    png = shirt_png()
    results: list[Result] = []
    lock = threading.Lock()
    stop_load = threading.Event()
    t0 = time.monotonic()

    def worker() -> None:
        with httpx.Client(base_url=topology.url, timeout=10.0) as client:
            while not stop_load.is_set() and time.monotonic() - t0 < LOAD_DEADLINE_S:
                with lock:
                    if len(results) >= MAX_REQUESTS:
                        return
                started = time.monotonic()
                try:
                    response = client.post(
                        "/classify?model=lenet", files={"file": ("shirt.png", png, "image/png")}
                    )
                    result = Result(
                        started,
                        time.monotonic(),
                        response.status_code,
                        response.headers.get("x-instance-id"),
                        "" if response.status_code == 200 else response.text[:200],
                    )
                except httpx.TransportError as error:
                    result = Result(started, time.monotonic(), None, None, repr(error))
                with lock:
                    results.append(result)

    def count(predicate) -> int:
        with lock:
            return sum(1 for r in results if predicate(r))

    def wait_for(predicate, needed: int) -> None:
        while count(predicate) < needed and time.monotonic() - t0 < LOAD_DEADLINE_S:
            time.sleep(0.02)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda r: True, BEFORE_KILL)
        # A crash, not a graceful stop: no draining, in-flight requests are cut off.
        victim = topology.replicas["replica-b"].process
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed_at = time.monotonic()
        window_end = killed_at + FAILOVER_WINDOW_S
        wait_for(lambda r: r.started >= window_end, AFTER_WINDOW)
    finally:
        stop_load.set()
        for thread in threads:
            thread.join(timeout=15)

    before = [r for r in results if r.finished < killed_at]
    during = [r for r in results if r.finished >= killed_at and r.started < window_end]
    after = [r for r in results if r.started >= window_end]
    access = (topology.workdir / "access.log").read_text().splitlines()
    error_log = (topology.workdir / "error.log").read_text()
    summary = (
        f"{len(results)} requests in {time.monotonic() - t0:.1f} s; "
        f"before kill: {len(before)} {dict(Counter(r.instance for r in before))}; "
        f"during {FAILOVER_WINDOW_S:.0f} s window: {len(during)}, "
        f"failed {sum(r.status != 200 for r in during)}; "
        f"after: {len(after)} {dict(Counter(r.instance for r in after))}, "
        f"failed {sum(r.status != 200 for r in after)}; "
        f"retried by nginx: {sum(', ' in line for line in access)}"
    )
    print(summary)
    context = f"{summary}\n{topology.logs()}"

    assert all(r.status == 200 for r in before), context
    assert set(Counter(r.instance for r in before)) == {"replica-a", "replica-b"}, context
    assert len(after) >= AFTER_WINDOW, context
    failed = [r for r in after if r.status != 200]
    assert not failed, f"{failed[:5]}\n{context}"
    assert {r.instance for r in after} == {"replica-a"}, context
    # Passive health check: nginx took the dead replica out rather than trying it every time.
    assert "upstream server temporarily disabled" in error_log, context
