"""A server's processes as /proc shows them: the process tree, CPU time, resident memory, open
descriptors and what each process is. Shared by scripts/bench_serve.py and scripts/soak.py."""

from __future__ import annotations

import contextlib
from pathlib import Path


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants that are alive."""
    pids, pending = [], [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):  # the thread or process has ended
                pending += [int(c) for c in (task / "children").read_text().split()]
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of every thread of `pids` so far, from the scheduler's nanosecond counters (the
    tick-based utime/stime of /proc/PID/stat are too coarse, and wrong in some VMs)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):  # the thread has ended
                total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def rss_mb(pids: list[int]) -> list[float]:
    """Resident memory of each process that runs Python code of the server, in MB."""
    sizes = []
    for pid in pids:
        size = status_field(pid, "VmRSS")
        if size is not None:
            sizes.append(size / 1024)
    return sizes


def status_field(pid: int, name: str) -> int | None:
    """A numeric field of /proc/PID/status (`VmRSS` in kB, `Threads`); None once it has ended."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    return None


def open_descriptors(pid: int) -> int | None:
    """How many file descriptors `pid` has open (sockets, files, pipes); None once it has ended."""
    try:
        return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return None


def role(pid: int, root: int) -> str:
    """What a process of a server's tree is: the root, a worker started by multiprocessing's
    spawn (uvicorn's and fmnist-serve's workers), or multiprocessing's resource tracker."""
    if pid == root:
        return "main"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "ended"
    if b"resource_tracker" in command:
        return "resource tracker"
    return "worker" if b"spawn_main" in command else "child"
