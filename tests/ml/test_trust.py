"""The numpy side of trust (no data needed): the temperature fit, the calibration metrics, the
Mahalanobis score and its saved statistics, and how a card's trust record is read back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ml.calibration import brier, ece, fit_temperature, nll, reliability, softmax
from ml.cards import CheckpointError
from ml.ood import MahalanobisScore, thresholds
from ml.ood_sets import FAR_SETS, NEAR_SETS, ood_sets
from ml.trust import read_trust

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints"


def sampled_labels(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Labels drawn from `probabilities`: a perfectly calibrated classifier's truth."""
    cumulative = probabilities.cumsum(axis=1)
    return (rng.random((len(probabilities), 1)) > cumulative).sum(axis=1)


def test_the_fitted_temperature_undoes_a_known_one():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 3, size=(20_000, 10))
    labels = sampled_labels(softmax(true_logits), rng)
    # A model twice as sure as it should be: its logits are the true ones times 2.
    assert fit_temperature(2 * true_logits, labels) == pytest.approx(2.0, rel=0.05)
    overconfident, calibrated = softmax(2 * true_logits), softmax(2 * true_logits, 2.0)
    assert ece(calibrated, labels) < 0.01 < ece(overconfident, labels)
    assert nll(calibrated, labels) < nll(overconfident, labels)
    assert brier(calibrated, labels) < brier(overconfident, labels)


def test_ece_is_the_gap_between_confidence_and_accuracy():
    # Ten images at confidence 0.9, of which half are right: ECE 0.4.
    probabilities = np.full((10, 10), 0.1 / 9)
    probabilities[:, 0] = 0.9
    labels = np.array([0] * 5 + [1] * 5)
    (row,) = reliability(probabilities, labels)
    assert row["count"] == 10 and row["accuracy"] == 0.5
    assert row["confidence"] == pytest.approx(0.9)
    assert ece(probabilities, labels) == pytest.approx(0.4)
    assert brier(np.eye(10)[labels], labels) == 0


def gaussian_outputs(rng: np.random.Generator, shift: float = 0.0) -> dict[str, np.ndarray]:
    count = 3_000
    labels = rng.integers(0, 10, count)
    centre = np.eye(10)[labels] * 4
    return {
        "penultimate": (rng.normal(size=(count, 6)) + 2 + shift) ** 2,
        "logits": centre + rng.normal(size=(count, 10)) + shift,
        "layer_statistics": (rng.normal(size=(count, 4)) + 3) ** 2,
        "labels": labels,
    }


def test_the_score_is_low_in_distribution_and_high_outside():
    rng = np.random.default_rng(1)
    train, held_out, shifted = (gaussian_outputs(rng, s) for s in (0.0, 0.0, 3.0))
    score = MahalanobisScore.fit(train, train["labels"])
    assert score.dimension == 6 + 10 + 4
    inside, outside = score(held_out), score(shifted)
    # Squared distances in 20 dimensions: about 20 inside.
    assert 15 < np.median(inside) < 25
    assert np.mean(outside > np.quantile(inside, 0.95)) > 0.99
    cut = thresholds(inside)
    assert list(cut) == ["0.01", "0.02", "0.05", "0.1"]
    assert np.mean(inside > cut["0.05"]) == pytest.approx(0.05, abs=0.002)
    assert cut["0.01"] > cut["0.05"] > cut["0.1"]


def test_statistics_survive_a_round_trip_and_garbage_is_refused():
    rng = np.random.default_rng(2)
    train = gaussian_outputs(rng)
    score = MahalanobisScore.fit(train, train["labels"])
    again = MahalanobisScore.from_bytes(score.to_bytes())
    assert np.array_equal(again(train), score(train))
    for data in (b"", b"not an npz file", score.to_bytes()[:100]):
        with pytest.raises(ValueError, match="not OOD statistics"):
            MahalanobisScore.from_bytes(data)
    with pytest.raises(ValueError, match="belong to another model"):
        score({**train, "penultimate": train["penultimate"][:, :3]})


def test_a_dead_feature_does_not_break_the_fit():
    rng = np.random.default_rng(3)
    train = gaussian_outputs(rng)
    train["penultimate"][:, 0] = 0.0  # a ReLU unit that never fires
    score = MahalanobisScore.fit(train, train["labels"])
    assert np.isfinite(score(train)).all()


def test_the_ood_sets_are_fixed_and_light_on_dark():
    garments = np.zeros((7, 28, 28), np.uint8)
    garments[:, :10] = 200  # light at the top
    sets = ood_sets(garments)
    assert set(sets) == set(FAR_SETS) | set(NEAR_SETS)
    for images in sets.values():
        assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)
    assert len(sets["digits"]) == 1797 and len(sets["constant"]) == 256
    assert (sets["upside_down"][:, -10:] == 200).all()
    assert np.array_equal(ood_sets(garments)["photos"], sets["photos"])
    assert sets["digits"][:, :4].max() == 0  # a digit is centred on a dark background


def copy_classifier(folder: Path, name: str = "mynet") -> Path:
    for path in SHIPPED.glob(f"{name}.*"):
        shutil.copy(path, folder)
    return folder


def test_read_trust_chooses_the_operating_point(tmp_path):
    card = json.loads((SHIPPED / "mynet.json").read_text())
    trust = read_trust("mynet", card, SHIPPED)
    assert trust.flag_rate == card["ood"]["default_flag_rate"]
    assert trust.threshold == card["ood"]["thresholds"][trust.flag_rate]
    assert read_trust("mynet", card, SHIPPED, "0.01").threshold > trust.threshold
    with pytest.raises(CheckpointError, match="no OOD threshold for flag rate 0.3"):
        read_trust("mynet", card, SHIPPED, "0.3")


def test_read_trust_verifies_the_statistics(tmp_path):
    folder = copy_classifier(tmp_path)
    card = json.loads((folder / "mynet.json").read_text())
    (folder / "mynet.ood.npz").write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match="sha256"):
        read_trust("mynet", card, folder)
    (folder / "mynet.ood.npz").unlink()
    with pytest.raises(CheckpointError, match="no file for mynet's OOD statistics"):
        read_trust("mynet", card, folder)
    del card["calibration"]
    with pytest.raises(CheckpointError, match="fmnist-calibrate --model mynet"):
        read_trust("mynet", card, folder)
