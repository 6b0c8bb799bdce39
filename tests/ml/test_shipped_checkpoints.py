"""The committed checkpoints, re-evaluated on the real Fashion-MNIST data.

Each card's validation and test metrics must be what the weights give on the same images (the
validation split is checked against the hash its card records), and the models must meet the
project's goals, which are held on validation: see the README for how the test set was used.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ml.calibrate import graph_outputs, separation
from ml.calibration import calibration_metrics, fit_temperature, softmax
from ml.cards import read_card
from ml.checkpoint import load_model
from ml.data import DatasetError, FashionMNIST, load_fashion_mnist
from ml.evaluate import classifier_metrics, vae_metrics
from ml.ood import MahalanobisScore, thresholds
from ml.ood_sets import ood_sets
from ml.trust import read_trust

# The project's goals, on the validation split (the original report: LeNet 79%, MyNet 84%).
ACCURACY_GOALS = {"lenet": 0.910, "mynet": 0.940}
VAE_GOAL_NATS = 238.0
SPLITS = {"validation": "val", "test": "test"}
CHECKPOINTS = Path("checkpoints")


@pytest.fixture(scope="module")
def fashion_mnist() -> FashionMNIST:
    try:
        return load_fashion_mnist()
    except DatasetError as exc:
        if os.environ.get("CI"):
            raise  # CI installs the dataset; its absence there is a failure, not a skip
        pytest.skip(str(exc))


@pytest.mark.real_data
@pytest.mark.parametrize("name", ["lenet", "mynet", "vae"])
def test_card_records_the_validation_split_it_was_chosen_on(
    fashion_mnist: FashionMNIST, name: str
) -> None:
    split = read_card(name)["training"]["split"]
    assert split["seed"] == fashion_mnist.split_seed
    assert split["val_indices_sha256"] == fashion_mnist.val.indices_sha256()


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(ACCURACY_GOALS))
@pytest.mark.parametrize("split", sorted(SPLITS))
def test_classifier_matches_its_card(fashion_mnist: FashionMNIST, name: str, split: str) -> None:
    model, card = load_model(name)
    measured = classifier_metrics(model, getattr(fashion_mnist, SPLITS[split]), "cpu")
    recorded = card["metrics"][split]
    assert measured["count"] == recorded["count"]
    assert measured["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-4)
    assert measured["confusion_matrix"] == recorded["confusion_matrix"]


@pytest.mark.real_data
@pytest.mark.parametrize("split", sorted(SPLITS))
def test_vae_matches_its_card(fashion_mnist: FashionMNIST, split: str) -> None:
    model, card = load_model("vae")
    images = getattr(fashion_mnist, SPLITS[split])
    measured = vae_metrics(model, images, "cpu", seed=card["training"]["seed"])
    recorded = card["metrics"][split]
    for key in ("loss", "kl", "bce_floor"):
        assert measured[key] == pytest.approx(recorded[key], abs=0.05)


@pytest.mark.parametrize("name", sorted(ACCURACY_GOALS))
def test_classifier_meets_its_goal_on_validation(name: str) -> None:
    card = read_card(name)  # whose figures the tests above hold to the data
    assert card["metrics"]["validation"]["accuracy"] >= ACCURACY_GOALS[name]


def test_vae_meets_its_goal_on_validation_without_posterior_collapse() -> None:
    validation = read_card("vae")["metrics"]["validation"]
    assert validation["loss"] <= VAE_GOAL_NATS
    assert validation["kl"] > 10.0  # a collapsed posterior has KL near 0


# Calibration is judged on held-out images: a validation ECE (the split the temperature was
# fitted on) would flatter it.
ECE_GOAL = 0.015
OOD_FLAG_RATE_MARGIN = 0.01  # flagged test share at the default point: within a point of it


@pytest.fixture(scope="module")
def classifier_outputs(fashion_mnist: FashionMNIST) -> dict[str, dict[str, dict]]:
    """Every shipped classifier's graph outputs on the three splits."""
    outputs = {}
    for name in sorted(ACCURACY_GOALS):
        model, _ = load_model(name)
        outputs[name] = {
            split: graph_outputs(model, getattr(fashion_mnist, split).images, "cpu")
            for split in ("train", "val", "test")
        }
    return outputs


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(ACCURACY_GOALS))
def test_calibration_matches_its_card(fashion_mnist, classifier_outputs, name) -> None:
    card = read_card(name)
    calibration = card["calibration"]
    outputs = classifier_outputs[name]
    labels = {"validation": fashion_mnist.val.labels, "test": fashion_mnist.test.labels}
    # Refitting on validation gives the card's temperature.
    temperature = fit_temperature(outputs["val"]["logits"], labels["validation"].numpy())
    assert temperature == pytest.approx(calibration["temperature"], abs=1e-3)
    for split, key in SPLITS.items():
        logits = outputs[key]["logits"]
        for version, t in (("uncalibrated", 1.0), ("calibrated", calibration["temperature"])):
            measured = calibration_metrics(softmax(logits, t), labels[split].numpy())
            recorded = calibration["metrics"][split][version]
            for metric, value in measured.items():
                assert value == pytest.approx(recorded[metric], abs=2e-4), (split, metric)
    assert calibration["metrics"]["test"]["calibrated"]["ece"] <= ECE_GOAL


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(ACCURACY_GOALS))
def test_ood_statistics_match_their_card(fashion_mnist, classifier_outputs, name) -> None:
    card = read_card(name)
    ood, outputs = card["ood"], classifier_outputs[name]
    shipped = read_trust(name, card, CHECKPOINTS).score
    # Refitting on the training split gives the shipped statistics.
    refitted = MahalanobisScore.fit(outputs["train"], fashion_mnist.train.labels.numpy())
    assert np.allclose(refitted.class_means, shipped.class_means, rtol=1e-6, atol=1e-9)
    assert np.allclose(refitted.precision, shipped.precision, rtol=1e-4, atol=1e-6)
    scores = {split: shipped(outputs[split]) for split in ("val", "test")}
    assert ood["thresholds"] == pytest.approx(thresholds(scores["val"]), rel=1e-6)
    for rate, threshold in ood["thresholds"].items():
        flagged = float(np.mean(scores["test"] > threshold))
        assert flagged == pytest.approx(ood["flagged"]["test"][rate], abs=2e-4)
    default = ood["default_flag_rate"]
    assert ood["flagged"]["test"][default] <= float(default) + OOD_FLAG_RATE_MARGIN


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(ACCURACY_GOALS))
def test_ood_separation_matches_its_card(fashion_mnist, classifier_outputs, name) -> None:
    card = read_card(name)
    score = read_trust(name, card, CHECKPOINTS).score
    test_scores = score(classifier_outputs[name]["test"])
    model, _ = load_model(name)
    for set_name, images in ood_sets(fashion_mnist.test.images.numpy()).items():
        measured = separation(test_scores, score(graph_outputs(model, images, "cpu")))
        recorded = card["ood"]["sets"][set_name]
        assert measured == pytest.approx({k: recorded[k] for k in measured}, abs=2e-4), set_name
