"""Cards are validated on every load: a tampered card is a CheckpointError that says what is
wrong, never an error from inside PyTorch, and never a model served with made-up numbers."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ml.cards import CheckpointError, read_card
from ml.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "checkpoints"
Card = dict[str, Any]


def copy_checkpoint(name: str, folder: Path, edit: Callable[[Card], object] | None = None) -> Path:
    """The shipped checkpoint `name` copied into `folder`, its card changed by `edit`."""
    for path in SHIPPED.glob(f"{name}.*"):
        shutil.copy(path, folder)
    if edit is not None:
        card = json.loads((folder / f"{name}.json").read_text())
        edit(card)
        (folder / f"{name}.json").write_text(json.dumps(card))
    return folder


def set_in(card: Card, dotted: str, value: object) -> None:
    *path, last = dotted.split(".")
    for key in path:
        card = card[int(key)] if isinstance(card, list) else card[key]
    card[last] = value


@pytest.mark.parametrize("name", ["lenet", "mynet", "vae"])
def test_shipped_cards_are_valid(name: str) -> None:
    assert read_card(name, SHIPPED)["name"] == name


# (model, field, tampered value, what the error must say)
TAMPERED = [
    ("lenet", "name", "mynet", "named 'mynet', not 'lenet'"),
    ("lenet", "kind", "autoencoder", "kind is 'autoencoder', but lenet is 'classifier'"),
    ("lenet", "architecture", "MyNet", "architecture is 'MyNet', but lenet is 'LeNet5'"),
    ("lenet", "hyper_parameters", {"num_classes": 7}, "num_classes: Extra inputs"),
    ("mynet", "hyper_parameters", {"dropout": "0.2"}, "dropout: Input should be a valid number"),
    ("mynet", "hyper_parameters", {"dropout": 1.5}, "dropout: Input should be less than 1"),
    ("mynet", "hyper_parameters", {}, "dropout: Field required"),
    (
        "vae",
        "hyper_parameters",
        {"latent_dim": 16},
        "the latent map has 32 dimensions, the model 16",
    ),
    ("vae", "hyper_parameters", {"latent_dim": -3}, "latent_dim: Input should be greater"),
    ("mynet", "metrics.test.accuracy", 0.99, "accuracy 0.99 disagrees with the confusion matrix"),
    ("mynet", "metrics.test.per_class_accuracy.Shirt", 0.99, "'Shirt' disagrees with the matrix"),
    ("mynet", "metrics.test.count", 20_000, "the confusion matrix counts 10000, not 20000"),
    ("mynet", "metrics.validation.accuracy", 0.95, "disagrees with the confusion matrix"),
    ("vae", "metrics.test.loss", 200.0, "loss 200.0 is not BCE 220.145 + KL 17.196"),
    ("vae", "metrics.validation.loss", 230.0, "is not BCE"),
    ("lenet", "history.35.val_accuracy", 0.95, "validation accuracy 0.9212 is not the selected"),
    ("lenet", "training.selected_epoch", 99, "the history has no epoch 99"),
    ("lenet", "class_names", ["a"] * 10, "class_names must be"),
    ("lenet", "input.normalisation.std", 1.0, "input.normalisation.std"),
    ("lenet", "weights.file", "../mynet.safetensors", "weights.file"),
    ("lenet", "weights.sha256", "not a hash", "weights.sha256"),
    ("lenet", "parameters", "many", "parameters: Input should be a valid integer"),
    ("vae", "embedding_maps", {}, "embedding_maps must be those of latent"),
    ("vae", "onnx.graphs", {}, "onnx.graphs must be decoder, encoder, forward"),
    ("lenet", "format", 9, "format: Input should be 1 or 2"),
    ("mynet", "calibration.temperature", 0.0, "temperature: Input should be greater"),
    ("mynet", "calibration.temperature", 1e6, "temperature: Input should be less"),
    (
        "mynet",
        "calibration.metrics.test.calibrated.accuracy",
        0.5,
        "the test accuracy differs before and after calibration",
    ),
    (
        "mynet",
        "calibration.metrics.validation",
        {"calibrated": {"accuracy": 0.9, "ece": 0.01, "nll": 0.2, "brier": 0.1}},
        "calibration metrics of validation need uncalibrated and calibrated",
    ),
    ("mynet", "calibration.method", "platt", "calibration.method"),
    ("lenet", "ood.method", "knn", "ood.method"),
    ("lenet", "ood.thresholds", {"0.05": 3.0}, "ood.thresholds must be those of the flag rates"),
    ("lenet", "ood.default_flag_rate", "0.5", "ood.default_flag_rate must be one of"),
    ("lenet", "ood.statistics.file", "../x.npz", "ood.statistics.file"),
    ("lenet", "ood.sets.digits.auroc", 1.5, "ood.sets.digits.auroc"),
    ("lenet", "ood", None, "calibration and ood are fitted together"),
    (
        "vae",
        "calibration",
        json.loads((SHIPPED / "mynet.json").read_text())["calibration"],
        "only a classifier has calibration and ood records",
    ),
]


def test_ood_thresholds_must_fall_as_the_flag_rate_rises(tmp_path) -> None:
    def disorder(card: Card) -> None:
        card["ood"]["thresholds"]["0.1"] = card["ood"]["thresholds"]["0.01"] + 1

    folder = copy_checkpoint("lenet", tmp_path, disorder)
    with pytest.raises(CheckpointError, match="a higher flag rate needs a lower threshold"):
        read_card("lenet", folder)


def test_calibration_accuracy_must_be_the_cards(tmp_path) -> None:
    def inflate(card: Card) -> None:
        for version in ("uncalibrated", "calibrated"):
            set_in(card, f"calibration.metrics.test.{version}.accuracy", 0.99)

    folder = copy_checkpoint("mynet", tmp_path, inflate)
    with pytest.raises(CheckpointError, match="the calibration's test accuracy is not the card's"):
        read_card("mynet", folder)


@pytest.mark.parametrize(("name", "field", "value", "message"), TAMPERED)
def test_tampered_card_is_a_checkpoint_error(tmp_path, name, field, value, message) -> None:
    folder = copy_checkpoint(name, tmp_path, lambda card: set_in(card, field, value))
    with pytest.raises(CheckpointError, match="is invalid") as error:
        load_model(name, folder)
    assert message in str(error.value)


def test_card_of_a_new_format_must_record_how_to_rerun(tmp_path) -> None:
    """A format-2 card must name every library version a rerun depends on, and the split."""
    folder = copy_checkpoint("lenet", tmp_path, lambda card: set_in(card, "format", 2))
    with pytest.raises(CheckpointError, match="versions lacks safetensors, platform"):
        read_card("lenet", folder)

    def without_split(card: Card) -> None:
        set_in(card, "format", 2)
        card["versions"] |= {"safetensors": "0", "platform": "x", "cpu_capability": "x"}
        del card["training"]["split"]

    folder = copy_checkpoint("lenet", tmp_path, without_split)
    with pytest.raises(CheckpointError, match="training.split is required from card format 2"):
        read_card("lenet", folder)


@pytest.mark.parametrize("text", ["[]", "{", "null"])
def test_card_that_is_not_a_json_object_is_a_checkpoint_error(tmp_path, text: str) -> None:
    (tmp_path / "lenet.json").write_text(text)
    with pytest.raises(CheckpointError, match="lenet.json"):
        read_card("lenet", tmp_path)


def test_weights_of_another_model_are_refused(tmp_path) -> None:
    """A card pointing at another checkpoint's weights, with their true hash, passes the hash
    check; building the model from them must still fail as a CheckpointError."""
    copy_checkpoint("mynet", tmp_path)
    mynet_weights = json.loads((SHIPPED / "mynet.json").read_text())["weights"]
    copy_checkpoint("lenet", tmp_path, lambda card: card.update(weights=mynet_weights))
    with pytest.raises(CheckpointError, match="lenet's weights do not fit its card"):
        load_model("lenet", tmp_path)


def test_inflated_parameter_count_is_refused(tmp_path) -> None:
    copy_checkpoint("lenet", tmp_path, lambda card: card.update(parameters=1_000_000))
    with pytest.raises(CheckpointError, match="says 1,000,000 parameters, the model has 61,706"):
        load_model("lenet", tmp_path)
