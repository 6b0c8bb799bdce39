"""`fmnist-calibrate`: fit what makes a classifier's answers trustworthy, for checkpoints that
exist, without retraining. `fmnist-train` does the same after training each classifier.

    fmnist-calibrate                       # lenet and mynet in ./checkpoints, figures in reports/
    fmnist-calibrate --model mynet --checkpoints runs/x/checkpoints --no-figures

For each classifier it records in the card:
- `calibration`: the temperature that minimises the negative log-likelihood on the validation
  split (`ml.calibration`), with ECE, NLL and Brier score before and after on validation and
  test;
- `ood`: the Mahalanobis statistics of the training split (`ml.ood`, in `<name>.ood.npz`, its
  sha256 in the card), the score thresholds that flag 1, 2, 5 and 10% of validation images, and
  how the score separates the test set from the sets of `ml.ood_sets` (AUROC, and the share of
  each set missed when 95% of test images pass) and how many test images it flags.

Fitting reads the training and validation splits; the test split is evaluated once, for the
record, after everything was fitted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ml.calibration import (
    ECE_BINS,
    calibration_metrics,
    fit_temperature,
    reliability,
    softmax,
)
from ml.cards import CheckpointError, file_entry
from ml.checkpoint import load_model, write_card
from ml.data import DatasetError, FashionMNIST, load_fashion_mnist, to_float
from ml.devices import resolve_device
from ml.export import ClassifierForward
from ml.graphs import GRAPHS
from ml.models import Classifier
from ml.ood import DEFAULT_FLAG_RATE, FEATURES, METHOD, MahalanobisScore, thresholds
from ml.ood_sets import ood_sets
from ml.registry import MODELS

CLASSIFIERS = [name for name, spec in MODELS.items() if spec.kind == "classifier"]
PASS_RATE = 0.95  # the share of in-distribution images let through, for the missed-share figure


def ood_statistics_path(name: str, checkpoint_dir: str | Path) -> Path:
    return Path(checkpoint_dir) / f"{name}.ood.npz"


@torch.inference_mode()
def graph_outputs(
    model: Classifier, images: np.ndarray | torch.Tensor, device: torch.device
) -> dict[str, np.ndarray]:
    """What the classifier's served graph (`ml.graphs`) gives for uint8 N x 28 x 28 images, by
    output name, as float64 arrays: the same module that `fmnist-export` exports."""
    module = ClassifierForward(model.eval())
    images = torch.as_tensor(np.asarray(images))
    chunks = [
        [output.cpu() for output in module(to_float(images[i : i + 1000]).to(device))]
        for i in range(0, len(images), 1000)
    ]
    names = GRAPHS["classifier"]["forward"].outputs
    return {
        name: torch.cat([chunk[k] for chunk in chunks]).double().numpy()
        for k, name in enumerate(names)
    }


def separation(in_scores: np.ndarray, out_scores: np.ndarray) -> dict[str, float]:
    """How well a score (higher: more unusual) tells `out_scores` from `in_scores`: the AUROC, and
    the share of the out-of-distribution images that pass when 95% of the others do."""
    truth = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
    passing = np.quantile(in_scores, PASS_RATE)
    return {
        "auroc": round(float(roc_auc_score(truth, np.r_[in_scores, out_scores])), 4),
        "fpr_at_95_tpr": round(float(np.mean(out_scores <= passing)), 4),
    }


def fit_trust(
    name: str,
    model: Classifier,
    card: dict[str, Any],
    data: FashionMNIST,
    checkpoint_dir: str | Path,
    device: torch.device,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit and record `calibration` and `ood` in classifier `name`'s card (rewritten) and write
    its OOD statistics; returns the card and the reliability bins of each split (for figures)."""
    model = model.to(device).eval()
    val = graph_outputs(model, data.val.images, device)
    val_labels = data.val.labels.numpy()
    temperature = fit_temperature(val["logits"], val_labels)
    train = graph_outputs(model, data.train.images, device)
    score = MahalanobisScore.fit(train, data.train.labels.numpy())
    path = ood_statistics_path(name, checkpoint_dir)
    path.write_bytes(score.to_bytes())
    val_scores = score(val)
    cut = thresholds(val_scores)

    # Everything is fitted: the test split and the OOD sets are evaluated for the record.
    test = graph_outputs(model, data.test.images, device)
    test_labels = data.test.labels.numpy()
    test_scores = score(test)
    splits = {"validation": (val["logits"], val_labels), "test": (test["logits"], test_labels)}
    metrics, bins = {}, {}
    for split, (logits, labels) in splits.items():
        raw, calibrated = softmax(logits), softmax(logits, temperature)
        metrics[split] = {
            "uncalibrated": calibration_metrics(raw, labels),
            "calibrated": calibration_metrics(calibrated, labels),
        }
        bins[split] = {
            "uncalibrated": reliability(raw, labels),
            "calibrated": reliability(calibrated, labels),
        }
    sets = {}
    for set_name, images in ood_sets(data.test.images.numpy(), seed).items():
        outputs = graph_outputs(model, images, device)
        sets[set_name] = {"count": len(images), **separation(test_scores, score(outputs))}
    card = {
        **card,
        "calibration": {
            "method": "temperature",
            "temperature": temperature,
            "fitted_on": "validation",
            "ece_bins": ECE_BINS,
            "metrics": metrics,
        },
        "ood": {
            "method": METHOD,
            "features": FEATURES,
            "fitted_on": "train",
            "statistics": file_entry(path),
            "thresholds": cut,
            "default_flag_rate": DEFAULT_FLAG_RATE,
            "flagged": {
                "validation": {r: round(float(np.mean(val_scores > t)), 4) for r, t in cut.items()},
                "test": {r: round(float(np.mean(test_scores > t)), 4) for r, t in cut.items()},
            },
            "sets": sets,
        },
    }
    write_card(name, card, checkpoint_dir)
    return card, bins


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fmnist-calibrate",
        description="Fit the calibration and OOD statistics of trained classifiers.",
    )
    parser.add_argument("--model", choices=[*CLASSIFIERS, "all"], default="all")
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    parser.add_argument("--data-dir", help="folder with the four IDX files (or FMNIST_DATA_DIR)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--no-figures", action="store_true", help="skip the reliability diagrams")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
        data = load_fashion_mnist(args.data_dir)
    except (ValueError, DatasetError) as exc:
        print(f"fmnist-calibrate: error: {exc}", file=sys.stderr)
        return 2
    for name in CLASSIFIERS if args.model == "all" else [args.model]:
        try:
            model, card = load_model(name, args.checkpoints, device)
        except CheckpointError as exc:
            print(f"fmnist-calibrate: error: {exc}", file=sys.stderr)
            return 1
        card, bins = fit_trust(name, model, card, data, args.checkpoints, device)
        if not args.no_figures:
            from ml.figures import plot_reliability

            plot_reliability(bins, name, args.reports / f"{name}_reliability.png")
        print(trust_summary(card))
    return 0


def trust_summary(card: dict[str, Any]) -> str:
    test = card["calibration"]["metrics"]["test"]
    ood = card["ood"]
    rate = ood["default_flag_rate"]
    aurocs = ", ".join(f"{s} {v['auroc']:.3f}" for s, v in ood["sets"].items())
    return (
        f"{card['name']:<6} T {card['calibration']['temperature']:.3f}  test ECE "
        f"{test['uncalibrated']['ece']:.2%} -> {test['calibrated']['ece']:.2%}  NLL "
        f"{test['uncalibrated']['nll']:.3f} -> {test['calibrated']['nll']:.3f}  OOD flags "
        f"{ood['flagged']['test'][rate]:.1%} of test at {rate}; AUROC {aurocs}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
