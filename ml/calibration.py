"""Calibrated probabilities: a temperature fitted on the validation split, and how calibrated
probabilities are (expected calibration error, negative log-likelihood, Brier score).

Label smoothing and weight decay leave a classifier under- or over-confident: its softmax is
right as often as it says only after dividing the logits by a temperature `T` (Guo et al., "On
Calibration of Modern Neural Networks", 2017). One scalar changes no prediction, only how sure
each is. Plain numpy, as the service applies it without PyTorch.
"""

from __future__ import annotations

import math

import numpy as np

ECE_BINS = 15  # equal-width confidence bins, as in Guo et al.
# The temperature is searched on a log scale in this range (golden-section search of the NLL,
# which is convex in 1 / T).
T_RANGE = (0.05, 20.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-300, None)).mean())


def brier(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean over images of the squared distance between the probabilities and the one-hot label."""
    onehot = np.eye(probabilities.shape[1])[labels]
    return float(((probabilities - onehot) ** 2).sum(axis=1).mean())


def reliability(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> list[dict[str, float]]:
    """Per equal-width confidence bin: its range, how many images, their mean confidence and
    their accuracy (empty bins are left out)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        if members.any():
            rows.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "count": int(members.sum()),
                    "confidence": float(confidence[members].mean()),
                    "accuracy": float(correct[members].mean()),
                }
            )
    return rows


def ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the bins' |accuracy - confidence|, weighted by their size."""
    rows = reliability(probabilities, labels, bins)
    return sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / len(labels)


def calibration_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """What a card records of a split, before and after calibration."""
    return {
        "accuracy": round(float((probabilities.argmax(axis=1) == labels).mean()), 5),
        "ece": round(ece(probabilities, labels), 5),
        "nll": round(nll(probabilities, labels), 5),
        "brier": round(brier(probabilities, labels), 5),
    }


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `labels`."""
    low, high = (math.log(t) for t in T_RANGE)
    ratio = (math.sqrt(5) - 1) / 2

    def loss(log_t: float) -> float:
        return nll(softmax(logits, math.exp(log_t)), labels)

    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    while high - low > 1e-6:
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return round(math.exp((low + high) / 2), 5)
