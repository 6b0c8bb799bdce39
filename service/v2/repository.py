"""The v2 model repository extension, whichever protocol asks: the index of the repository's
models, and loading and unloading one (`service.routes.repository` over REST,
`service.grpc.servicer` over gRPC).

The repository is the checkpoint folder (FMNIST_CHECKPOINT_DIR) and its models are the
registered ones (`lenet`, `mynet`, `vae`; `vae-decoder` comes and goes with `vae`). A load reads
the folder as it is at that moment, verifies the hashes, warms the model and swaps it in
(`Runtime.load`). Each server process holds its own models: with several workers, a load
reaches the one process that answers it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import ml
from service.errors import InvalidParameter
from service.runtime import Runtime
from service.v2.catalog import version_of

READY, UNAVAILABLE = "READY", "UNAVAILABLE"


@dataclass(frozen=True)
class Entry:
    name: str
    state: str
    version: str | None = None  # of a loaded model
    reason: str = ""


def index(runtime: Runtime, only_ready: bool) -> list[Entry]:
    """Every model of the repository (only the loaded ones when `only_ready`), in its order."""
    entries = []
    for name in ml.MODELS:
        loaded = runtime.models.get(name)
        if loaded is not None:
            entries.append(Entry(name, READY, version_of(loaded)))
        elif not only_ready:
            entries.append(Entry(name, UNAVAILABLE, reason="unloaded"))
    return entries


async def load(runtime: Runtime, name: str, parameters: Mapping[str, object]) -> str:
    """Load `name` from the checkpoint folder as it is now; its new version."""
    if parameters:
        raise InvalidParameter(
            "load takes no parameters (no config or file overrides): it loads the checkpoint "
            "folder's files, whose cards vouch for them"
        )
    return version_of(await runtime.load(name))
