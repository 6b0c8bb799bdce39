"""New checkpoint versions for the repository tests, written the way the exporter writes them:
weights and ONNX graph changed together, their sha256 recorded in the card."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import onnx
from onnx import numpy_helper
from safetensors.numpy import load_file, save_file

from ml.cards import sha256_of
from tests.live_service import CHECKPOINT_DIR


def copy_checkpoints(folder: Path) -> Path:
    shutil.copytree(CHECKPOINT_DIR, folder)
    return folder


TRAINED_AT = "2026-12-01T12:00:00+00:00"  # the date the rewritten checkpoints' cards record


def favour_class(folder: Path, name: str, class_id: int, boost: float = 100.0) -> str:
    """Rewrite classifier `name` in `folder` so its last layer prefers `class_id` by `boost`
    logits: a new version with a valid card. Returns its weights' sha256."""
    weights = load_file(folder / f"{name}.safetensors")
    weights["fc3.bias"][class_id] += boost
    save_file(weights, folder / f"{name}.safetensors")
    graph = onnx.load(folder / f"{name}.onnx")
    for initializer in graph.graph.initializer:
        if initializer.name == "model.fc3.bias":
            bias = numpy_helper.to_array(initializer).copy()
            bias[class_id] += boost
            initializer.CopyFrom(numpy_helper.from_array(bias, initializer.name))
    onnx.save(graph, folder / f"{name}.onnx")
    card_file = folder / f"{name}.json"
    card = json.loads(card_file.read_text())
    card["weights"]["sha256"] = sha256_of((folder / f"{name}.safetensors").read_bytes())
    card["onnx"]["graphs"]["forward"]["sha256"] = sha256_of((folder / f"{name}.onnx").read_bytes())
    card["training"]["finished_at"] = TRAINED_AT
    staged = card_file.with_suffix(".json.new")
    staged.write_text(json.dumps(card, indent=2))
    os.replace(staged, card_file)
    return card["weights"]["sha256"]
