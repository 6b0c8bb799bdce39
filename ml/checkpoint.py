"""Saving and loading trained PyTorch models: `<name>.safetensors` (weights, no pickle) and the
card beside it (see `ml.cards`); `load_model` refuses weights whose hash does not match the card.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file
from torch import nn

from ml.card_schema import CARD_FORMAT
from ml.cards import CheckpointError, card_path, file_entry, read_card, read_verified
from ml.registry import get_spec


def weights_path(name: str, checkpoint_dir: str | os.PathLike) -> Path:
    return Path(checkpoint_dir) / f"{name}.safetensors"


def save_checkpoint(
    name: str, model: nn.Module, card: dict[str, Any], checkpoint_dir: str | os.PathLike
) -> dict[str, Any]:
    """Write weights and card; returns the card as written (with format, file name and hash)."""
    path = weights_path(name, checkpoint_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"model": name})
    card = {"format": CARD_FORMAT, "name": name, **card, "weights": file_entry(path)}
    write_card(name, card, checkpoint_dir)
    return card


def write_card(name: str, card: dict[str, Any], checkpoint_dir: str | os.PathLike) -> None:
    card_path(name, checkpoint_dir).write_text(json.dumps(card, indent=1) + "\n")


def load_model(
    name: str,
    checkpoint_dir: str | os.PathLike = "checkpoints",
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """The one way to get a trained model: built from the registry with the card's validated
    hyper-parameters, from the very bytes whose hash was checked, in eval mode. Raises
    CheckpointError for anything wrong with the card or the weights."""
    card = read_card(name, checkpoint_dir)
    weights = read_verified(card["weights"], checkpoint_dir, f"{name}'s weights")
    model = get_spec(name).create(card["hyper_parameters"])
    try:
        model.load_state_dict(load_safetensors(weights))
    except (SafetensorError, RuntimeError) as exc:  # not a safetensors file; keys or shapes differ
        raise CheckpointError(f"{name}'s weights do not fit its card: {exc}") from exc
    parameters = sum(p.numel() for p in model.parameters())
    if parameters != card["parameters"]:
        raise CheckpointError(
            f"{name}'s card says {card['parameters']:,} parameters, the model has {parameters:,}"
        )
    return model.to(device).eval(), card
