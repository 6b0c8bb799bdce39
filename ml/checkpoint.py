"""Checkpoint format: `<name>.safetensors` (weights, no pickle) + `<name>.json` (the card).

The card records how the weights were made and how good they are, and the sha256 of the
weights file; `load_model` refuses weights whose hash does not match their card.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ml.registry import get_spec

CARD_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match its card."""


def paths(name: str, checkpoint_dir: str | os.PathLike) -> tuple[Path, Path]:
    folder = Path(checkpoint_dir)
    return folder / f"{name}.safetensors", folder / f"{name}.json"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    name: str, model: nn.Module, card: dict[str, Any], checkpoint_dir: str | os.PathLike
) -> dict[str, Any]:
    """Write weights and card; returns the card as written (with format, file name and hash)."""
    weights_path, card_path = paths(name, checkpoint_dir)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights_path), metadata={"model": name})
    card = {
        "format": CARD_FORMAT,
        "name": name,
        **card,
        "weights": {"file": weights_path.name, "sha256": sha256_of(weights_path)},
    }
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    return card


def read_card(name: str, checkpoint_dir: str | os.PathLike = "checkpoints") -> dict[str, Any]:
    _, card_path = paths(name, checkpoint_dir)
    try:
        return json.loads(card_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no card for {name!r}: {card_path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"card {card_path} is not valid JSON: {exc}") from exc


def load_model(
    name: str,
    checkpoint_dir: str | os.PathLike = "checkpoints",
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """The one way to get a trained model: built from the registry, hash verified, in eval mode."""
    spec = get_spec(name)
    card = read_card(name, checkpoint_dir)
    weights_path, _ = paths(name, checkpoint_dir)
    if not weights_path.is_file():
        raise CheckpointError(f"no weights for {name!r}: {weights_path} does not exist")
    expected = card.get("weights", {}).get("sha256")
    actual = sha256_of(weights_path)
    if actual != expected:
        raise CheckpointError(
            f"{weights_path} has sha256 {actual}, but its card records {expected}: "
            "the weights were changed or belong to another card; refusing to load them"
        )
    model = spec.build(**card.get("hyper_parameters", spec.hyper_parameters))
    model.load_state_dict(load_file(str(weights_path), device="cpu"))
    return model.to(device).eval(), card
