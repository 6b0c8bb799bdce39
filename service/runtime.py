"""The loaded models: read and verified at start-up, loaded into the chosen backend, warmed,
and served through one dynamic batcher per model operation."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

import ml
from service.backends import Backend, Engine, choose_backend, load_engine
from service.batching import Batcher
from service.decoding import Decoder
from service.errors import InvalidParameter, ModelLoadFailed, NotFound, NotReady, UnknownModel
from service.metrics import Metrics
from service.settings import Settings

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The service cannot start as configured (bad device, missing or altered checkpoint)."""


@dataclass
class LoadedModel:
    name: str
    kind: str
    card: dict[str, Any]
    engine: Engine
    batchers: dict[str, Batcher] = field(default_factory=dict)
    executor: ThreadPoolExecutor | None = None
    successor: LoadedModel | None = None
    """The load that replaced this one: calls that come after its batchers stopped go there."""
    _calls: int = 0  # calls inside a batcher now

    @property
    def device(self) -> str:
        return self.engine.device

    @property
    def version(self) -> str:
        """The weights' sha256, shortened: a new checkpoint is a new version."""
        return self.card["weights"]["sha256"][:12]

    @property
    def trained_at(self) -> str | None:
        """When training finished (UTC, ISO 8601); cards before format 2 do not record it."""
        return self.card["training"].get("finished_at")

    @property
    def layers(self) -> tuple[str, ...]:
        return ml.EMBEDDING_LAYERS[self.engine.kind]

    @property
    def latent_dim(self) -> int | None:
        if self.kind != "autoencoder":
            return None
        return self.card.get("hyper_parameters", {}).get("latent_dim")

    async def run(self, op: str, inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        """Run operation `op` (see `service.backends.engine.OPERATIONS`) through its batcher."""
        if self.successor is not None:
            # Swapped out: new calls go to the replacement at once. Waiting until this model's
            # batchers had stopped let a call slip into one that `drain` was about to stop.
            return await self.successor.run(op, inputs)
        self._calls += 1
        try:
            return await self.batchers[op].submit(inputs)
        finally:
            self._calls -= 1

    async def drain(self) -> None:
        """Once every call already in a batcher is answered, stop the batchers and the thread."""
        while self._calls:
            await asyncio.sleep(0.005)
        for batcher in self.batchers.values():
            await batcher.stop()
        if self.executor is not None:
            self.executor.shutdown(wait=False)


class Runtime:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models: dict[str, LoadedModel] = {}
        self.backend: Backend | None = None
        self.decoder = Decoder(settings.decoder_threads)
        self._executors: list[ThreadPoolExecutor] = []
        self._ready = False
        self.draining = False  # set on SIGTERM: readiness fails while requests are still served
        self._loading = asyncio.Lock()  # one repository load or unload at a time

    @property
    def serving(self) -> bool:
        """Models loaded and warmed, their batchers running: requests are answered."""
        return self._ready and all(
            batcher.running
            for loaded in self.models.values()
            for batcher in loaded.batchers.values()
        )

    @property
    def ready(self) -> bool:
        """What the readiness probes say: serving, and not draining (see `service.drain`)."""
        return self.serving and not self.draining

    @property
    def alive(self) -> bool:
        """False once a serving model's batcher has died: readiness alone would then say 503
        forever while the process looked healthy, and nothing would restart it."""
        return not any(
            batcher.crashed
            for loaded in self.models.values()
            for batcher in loaded.batchers.values()
        )

    async def start(self) -> None:
        """Load, verify and warm every configured model; raises `StartupError`."""
        settings = self.settings
        try:
            self.backend = choose_backend(settings.backend, settings.device)
        except ValueError as exc:
            raise StartupError(f"FMNIST_BACKEND / FMNIST_DEVICE: {exc}") from None
        for name in settings.models:
            try:
                card, engine = await self._open(name)
            except ml.CheckpointError as exc:
                raise StartupError(f"cannot load model {name!r}: {exc}") from None
            except ValueError as exc:
                raise StartupError(f"FMNIST_DEVICE: {exc}") from None
            self.models[name] = self._serve(name, card, engine)
        for loaded in self.models.values():
            try:
                await self._warm(loaded)
            except ValueError as exc:  # e.g. OOD statistics of another model's features
                raise StartupError(f"model {loaded.name!r} failed its warm-up: {exc}") from None
        self._ready = True

    async def load(self, name: str) -> LoadedModel:
        """Load `name` from the checkpoint folder as it is now (hashes verified), warm it, and
        swap it in: new requests use it, calls already in the old model's batchers finish
        there. On failure the old model keeps serving and `ModelLoadFailed` is raised."""
        if name not in ml.MODELS:
            raise NotFound(f"unknown model {name!r}; known models: {', '.join(ml.MODELS)}")
        async with self._loading:
            try:
                card, engine = await self._open(name)
            except (ml.CheckpointError, ValueError) as exc:
                raise ModelLoadFailed(f"cannot load model {name!r}: {exc}") from None
            loaded = self._serve(name, card, engine)
            try:
                await self._warm(loaded)
            except Exception as exc:
                await self._retire(loaded)
                raise ModelLoadFailed(f"model {name!r} failed its warm-up: {exc}") from exc
            previous = self.models.get(name)
            self.models[name] = loaded
            if previous is not None:
                previous.successor = loaded
                await self._retire(previous)
            return loaded

    async def unload(self, name: str) -> None:
        """Stop serving `name`: new requests are refused, calls in its batchers finish."""
        async with self._loading:
            loaded = self.models.pop(name, None)
            if loaded is None:
                raise NotFound(f"model {name!r} is not loaded")
            await self._retire(loaded)

    async def stop_batchers(self) -> None:
        """No more batches: requests waiting in a batcher, and any that come later, are answered
        503. The first step of `stop`, and what the drain does when its time is nearly up."""
        self._ready = False
        for loaded in self.models.values():
            for batcher in loaded.batchers.values():
                await batcher.stop()

    async def stop(self) -> None:
        await self.stop_batchers()
        for executor in self._executors:
            executor.shutdown(wait=True)
        self.decoder.close()

    def get(self, name: str, route: str, kind: str | None = None) -> LoadedModel:
        """The loaded model `name`, which must be of `kind` (when given) to serve `route`."""
        if not self.serving:
            raise NotReady("models are not loaded yet, or the service is shutting down")
        loaded = self.models.get(name)
        if loaded is not None and kind in (None, loaded.kind):
            return loaded
        suitable = ", ".join(m.name for m in self.models.values() if kind in (None, m.kind))
        if loaded is None:
            known = "" if name in ml.MODELS else "unknown model; "
            raise UnknownModel(f"{known}model {name!r} is not loaded; {route} serves: {suitable}")
        raise InvalidParameter(
            f"model {name!r} is {_with_article(loaded.kind)}; {route} needs "
            f"{_with_article(kind)}: {suitable}"
        )

    @property
    def device(self) -> str | None:
        """Where the models run (`cpu`, `cuda:0`), once loaded."""
        return next((loaded.device for loaded in self.models.values()), None)

    async def _open(self, name: str) -> tuple[dict[str, Any], Engine]:
        """The card and engine of `name`, hashes verified; raises `ml.CheckpointError` or
        `ValueError` (bad device)."""
        settings = self.settings
        assert self.backend is not None
        card = ml.read_card(name, settings.checkpoint_dir)
        threads, parts = settings.engine_threads, settings.engine_batch_parts
        engine = await run_in_threadpool(
            load_engine,
            self.backend,
            name,
            card,
            settings.checkpoint_dir,
            settings.device,
            threads,
            parts,
            settings.ood_flag_rate,
        )
        log.info(
            "loaded %s (%s parameters, sha256 %s) on %s, %s with %d thread(s)%s",
            name,
            card.get("parameters"),
            card["weights"]["sha256"][:12],
            engine.device,
            engine.backend,
            threads,
            f", large batches in up to {parts} parts" if engine.backend == "onnxruntime" else "",
        )
        return card, engine

    async def _retire(self, loaded: LoadedModel) -> None:
        await loaded.drain()
        if loaded.executor in self._executors:
            self._executors.remove(loaded.executor)

    def _serve(self, name: str, card: dict[str, Any], engine: Engine) -> LoadedModel:
        # One thread per model: its batches run one after another, models run side by side.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{name}")
        self._executors.append(executor)
        loaded = LoadedModel(name, ml.get_spec(name).kind, card, engine, executor=executor)
        for op, fn in engine.operations().items():
            batcher = Batcher(
                name,
                op,
                fn,
                executor,
                self.metrics,
                max_batch=self.settings.max_batch_size,
                max_wait_s=self.settings.max_batch_wait_ms / 1000,
                max_queue=self.settings.max_queue,
            )
            batcher.start()
            loaded.batchers[op] = batcher
        return loaded

    async def _warm(self, loaded: LoadedModel) -> None:
        """One dummy batch through every operation, so the first request pays no set-up cost."""
        size = min(8, self.settings.max_batch_size)
        for op, batcher in loaded.batchers.items():
            if op == "decode":
                assert loaded.latent_dim is not None
                dummy = np.zeros((size, loaded.latent_dim), dtype=np.float32)
            else:
                dummy = np.zeros((size, ml.IMAGE_SIZE, ml.IMAGE_SIZE), dtype=np.float32)
            await batcher.submit(dummy)


def _with_article(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
