"""matplotlib charts are drawn on one thread per process (`service.plots.render`): matplotlib
keeps an open font file and caches per thread, and concurrent draws in the server's thread pool
spread over dozens of threads, each adding descriptors and memory (found by scripts/soak.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service import plots
from tests.live_service import REPO

pytestmark = pytest.mark.anyio


async def test_charts_of_concurrent_requests_are_drawn_on_one_thread(client, monkeypatch):
    threads: set[str] = set()
    for name in ("classification_chart", "embedding_map"):
        draw = getattr(plots, name)

        def recording(*args, draw=draw):
            threads.add(threading.current_thread().name)
            return draw(*args)

        monkeypatch.setattr(plots, name, recording)
    image = (REPO / "service" / "static" / "examples" / "bag.png").read_bytes()
    upload = {"file": ("bag.png", image, "image/png")}
    answers = await asyncio.gather(
        *(client.post("/classify?format=png", files=upload) for _ in range(4)),
        *(client.post("/embed?format=png", files=upload) for _ in range(4)),
    )
    assert [answer.status_code for answer in answers] == [200] * 8
    assert all(answer.content.startswith(b"\x89PNG") for answer in answers)
    assert len(threads) == 1 and threads.pop().startswith("chart"), threads
