"""Check the compose stack through its load balancer: scripts/compose_check.sh runs this against
`docker-compose.yml` started with podman-compose.

    python scripts/compose_probe.py http://127.0.0.1:18090 --stop 'podman stop NAME'

1. every replica answers through nginx (distinct X-Instance-Id headers; --replicas of them);
2. under a steady load of /classify requests, --stop stops one replica (SIGTERM: it drains and
   exits) and no request fails, before, during or after; the last ones all come from the
   replicas left.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import numpy as np
from container_probe import png  # beside this file

from ml.data import load_split, locate

WORKERS = 4
AFTER_STOP_S = 3.0


class Load:
    """Threads posting /classify until stopped; each answer recorded as (start, status, id)."""

    def __init__(self, url: str, images: list[bytes]) -> None:
        self.url, self.images = url, images
        self.results: list[tuple[float, int | str, str]] = []
        self.running = threading.Event()
        self.threads = [threading.Thread(target=self.work, args=(i,)) for i in range(WORKERS)]

    def work(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            count = 0
            while self.running.is_set():
                image = self.images[(index + count * WORKERS) % len(self.images)]
                count += 1
                start = time.monotonic()
                try:
                    response = client.post(
                        "/classify", files={"file": ("image.png", image, "image/png")}
                    )
                    outcome: int | str = response.status_code
                    instance = response.headers.get("x-instance-id", "")
                except httpx.HTTPError as error:
                    outcome, instance = type(error).__name__, ""
                self.results.append((start, outcome, instance))

    def __enter__(self) -> Load:
        self.running.set()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.running.clear()
        for thread in self.threads:
            thread.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the load balancer's base URL")
    parser.add_argument("--stop", required=True, help="command that stops one replica")
    parser.add_argument("--replicas", type=int, default=2)
    args = parser.parse_args(argv)
    images = [png(pixels) for pixels in np.asarray(load_split(locate(), "test").images[:64])]

    with httpx.Client(base_url=args.url, timeout=30) as client:
        seen = Counter(client.get("/healthz").headers["x-instance-id"] for _ in range(20))
    print(f"compose: {len(seen)} replicas answered through nginx: {dict(seen)}")
    if len(seen) != args.replicas:
        print(f"error: expected {args.replicas} replicas", file=sys.stderr)
        return 1

    with Load(args.url, images) as load:
        time.sleep(1.0)
        stopped_at = time.monotonic()
        # The operator's own --stop command, run as given: that is what it is for.
        subprocess.run(shlex.split(args.stop), check=True, capture_output=True)  # noqa: S603
        stop_s = time.monotonic() - stopped_at
        time.sleep(AFTER_STOP_S)
    failed = [r for r in load.results if r[1] != 200]
    late = {instance for start, _, instance in load.results if start > stopped_at + stop_s + 1}
    print(
        f"compose: {len(load.results)} requests while one replica was stopped "
        f"(stop took {stop_s:.1f} s): {len(failed)} failed; afterwards served by {sorted(late)}"
    )
    if failed:
        print(f"error: failed requests: {Counter(r[1] for r in failed)}", file=sys.stderr)
        return 1
    if len(late) != args.replicas - 1:
        print("error: requests after the stop did not all go to the remaining replicas")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
