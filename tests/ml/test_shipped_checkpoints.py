"""The committed checkpoints, re-evaluated on the real Fashion-MNIST test set.

They must meet the project's targets and reproduce the metrics recorded in their cards.
"""

from __future__ import annotations

import os

import pytest

from ml.checkpoint import load_model
from ml.data import DatasetError, FashionMNIST, load_fashion_mnist
from ml.evaluate import classifier_metrics, vae_metrics

# The project's goals, which the shipped checkpoints must hold (the original report: LeNet 79%,
# MyNet 84%).
ACCURACY_TARGETS = {"lenet": 0.910, "mynet": 0.940}
VAE_TARGET_NATS = 238.0


@pytest.fixture(scope="module")
def fashion_mnist() -> FashionMNIST:
    try:
        return load_fashion_mnist()
    except DatasetError as exc:
        if os.environ.get("CI"):
            raise  # CI installs the dataset; its absence there is a failure, not a skip
        pytest.skip(str(exc))


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(ACCURACY_TARGETS))
def test_classifier_meets_target_and_matches_card(fashion_mnist: FashionMNIST, name: str) -> None:
    model, card = load_model(name)
    measured = classifier_metrics(model, fashion_mnist.test, "cpu")
    assert measured["count"] == 10_000
    assert measured["accuracy"] >= ACCURACY_TARGETS[name]
    assert measured["accuracy"] == pytest.approx(card["metrics"]["test"]["accuracy"], abs=1e-4)
    assert measured["confusion_matrix"] == card["metrics"]["test"]["confusion_matrix"]


@pytest.mark.real_data
def test_vae_meets_target_without_posterior_collapse(fashion_mnist: FashionMNIST) -> None:
    model, card = load_model("vae")
    measured = vae_metrics(model, fashion_mnist.test, "cpu", seed=card["training"]["seed"])
    assert measured["loss"] <= VAE_TARGET_NATS
    assert measured["kl"] > 10.0  # a collapsed posterior has KL near 0
    recorded = card["metrics"]["test"]
    assert measured["loss"] == pytest.approx(recorded["loss"], abs=0.05)
    assert measured["kl"] == pytest.approx(recorded["kl"], abs=0.05)
