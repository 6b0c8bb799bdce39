"""The loaded models: read and verified at start-up, put on the device, warmed, and served
through one dynamic batcher per model operation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from starlette.concurrency import run_in_threadpool
from torch import nn

import ml
from ml.data import IMAGE_SIZE
from ml.devices import resolve_device
from ml.embedding import embed, layers_of
from ml.models import ConvVAE, optimise_for_inference, vae_loss_terms
from service.batching import Batcher, BatchFn
from service.errors import InvalidParameter, NotReady, UnknownModel
from service.metrics import Metrics
from service.settings import Settings

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The service cannot start as configured (bad device, missing or altered checkpoint)."""


@dataclass
class LoadedModel:
    name: str
    kind: str
    model: nn.Module
    card: dict[str, Any]
    device: torch.device
    batchers: dict[str, Batcher] = field(default_factory=dict)

    @property
    def layers(self) -> tuple[str, ...]:
        return layers_of(self.model)

    @property
    def latent_dim(self) -> int | None:
        return self.model.latent_dim if isinstance(self.model, ConvVAE) else None

    async def run(self, op: str, inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        """Run operation `op` (see `operations`) on `inputs` through its batcher."""
        return await self.batchers[op].submit(inputs)


def operations(model: nn.Module, device: torch.device) -> dict[str, BatchFn]:
    """What each model can be asked to do, as batch functions from numpy arrays to numpy arrays
    (the tensors, the device and the channel dimension stay in here, in the worker thread).

    Classifiers: `classify` (N x 28 x 28 images -> N x 10 probabilities), `embed:<layer>`
    (images -> vectors). VAE: `embed:latent` (images -> latent means), `reconstruct` (images ->
    reconstructions of the latent means, BCE and KL per image), `decode` (latents -> images).
    """

    def on_device(
        compute: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], images_in: bool = True
    ) -> BatchFn:
        def run(inputs: np.ndarray) -> tuple[np.ndarray, ...]:
            x = torch.from_numpy(inputs)
            if images_in:
                x = x.unsqueeze(1)  # N x 1 x 28 x 28
            with torch.inference_mode():
                return tuple(_images_or_values(out.cpu()).numpy() for out in compute(x.to(device)))

        return run

    ops = {
        f"embed:{layer}": on_device(lambda x, layer=layer: (embed(model, x, layer),))
        for layer in layers_of(model)
    }
    if isinstance(model, ConvVAE):

        def reconstruct(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            mean, log_variance = model.encode(x)
            logits = model.decode_logits(mean)
            bce, kl = vae_loss_terms(logits, x, mean, log_variance)
            return torch.sigmoid(logits), bce, kl

        ops["reconstruct"] = on_device(reconstruct)
        ops["decode"] = on_device(lambda z: (model.decode(z),), images_in=False)
    else:
        ops["classify"] = on_device(lambda x: (torch.softmax(model(x), dim=1),))
    return ops


def _images_or_values(output: torch.Tensor) -> torch.Tensor:
    """N x 1 x H x W images lose their channel dimension; anything else is returned as is."""
    return output.squeeze(1) if output.dim() == 4 else output


class Runtime:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models: dict[str, LoadedModel] = {}
        self.device: torch.device | None = None
        self._executors: list[ThreadPoolExecutor] = []
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready and all(
            batcher.running
            for loaded in self.models.values()
            for batcher in loaded.batchers.values()
        )

    async def start(self) -> None:
        """Load, verify, place and warm every configured model; raises `StartupError`."""
        try:
            self.device = resolve_device(self.settings.device)
        except ValueError as exc:
            raise StartupError(f"FMNIST_DEVICE: {exc}") from None
        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        for name in self.settings.models:
            try:
                model, card = await run_in_threadpool(
                    ml.load_model, name, self.settings.checkpoint_dir, self.device
                )
            except ml.CheckpointError as exc:
                raise StartupError(f"cannot load model {name!r}: {exc}") from None
            self.models[name] = self._serve(name, optimise_for_inference(model), card)
            log.info("loaded %s (%s parameters) on %s", name, card.get("parameters"), self.device)
        await self._warm_up()
        self._ready = True

    async def stop(self) -> None:
        self._ready = False
        for loaded in self.models.values():
            for batcher in loaded.batchers.values():
                await batcher.stop()
        for executor in self._executors:
            executor.shutdown(wait=True)

    def get(self, name: str, route: str, kind: str | None = None) -> LoadedModel:
        """The loaded model `name`, which must be of `kind` (when given) to serve `route`."""
        if not self.ready:
            raise NotReady("models are not loaded yet, or the service is shutting down")
        suitable = ", ".join(m.name for m in self.models.values() if kind in (None, m.kind))
        if name not in self.models:
            known = "" if name in ml.MODELS else "unknown model; "
            raise UnknownModel(f"{known}model {name!r} is not loaded; {route} serves: {suitable}")
        loaded = self.models[name]
        if kind is not None and loaded.kind != kind:
            raise InvalidParameter(
                f"model {name!r} is {_with_article(loaded.kind)}; {route} needs "
                f"{_with_article(kind)}: {suitable}"
            )
        return loaded

    def _serve(self, name: str, model: nn.Module, card: dict[str, Any]) -> LoadedModel:
        assert self.device is not None
        # One thread per model: its batches run one after another, models run side by side.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{name}")
        self._executors.append(executor)
        loaded = LoadedModel(name, ml.get_spec(name).kind, model, card, self.device)
        for op, fn in operations(model, self.device).items():
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

    async def _warm_up(self) -> None:
        """One dummy batch through every operation, so the first request pays no set-up cost."""
        size = min(8, self.settings.max_batch_size)
        for loaded in self.models.values():
            for op, batcher in loaded.batchers.items():
                if op == "decode":
                    assert loaded.latent_dim is not None
                    dummy = np.zeros((size, loaded.latent_dim), dtype=np.float32)
                else:
                    dummy = np.zeros((size, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
                await batcher.submit(dummy)


def _with_article(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
