"""Which out-of-distribution score and which calibration to ship: every candidate measured on
the validation split, for each classifier in checkpoints/.

    python scripts/ood_methods.py              # writes reports/ood_methods.md

`fmnist-calibrate` ships one choice of each (`ml.ood`: a Mahalanobis distance on
[sqrt(penultimate), logits, sqrt(layer_statistics)], the last being each convolution's
per-channel mean and root mean square over the image, `ml.models.layer_statistics`;
`ml.calibration`: one temperature). This study is what justifies them, and it never uses the
test split, which `fmnist-calibrate` evaluates once, for the record:

- OOD scores (higher: more unusual) are computed from the outputs of the classifier's served
  graph (`ml.calibrate.graph_outputs`), fitted on the training split and judged on how well they
  tell the validation garments from the sets of `ml.ood_sets` (made here from validation
  garments): AUROC and the share of each set that passes when 95% of validation images do. The
  share of validation images a 95% quantile threshold flags is measured honestly, with the
  threshold taken on one half of validation and the share counted on the other (both ways,
  averaged);
- calibrations are compared by 5-fold cross-validation within the validation split: fitted on
  four folds, scored (ECE, NLL, Brier, accuracy) on the fifth, averaged over the folds.

Every random choice (the validation halves, the folds, the k-NN bank, the OOD sets) is seeded.
"""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
from scipy.optimize import minimize
from scipy.special import logsumexp
from sklearn.model_selection import StratifiedKFold

from ml.calibrate import CLASSIFIERS, graph_outputs, separation
from ml.calibration import ECE_BINS, calibration_metrics, fit_temperature, softmax
from ml.checkpoint import load_model
from ml.data import FashionMNIST, load_fashion_mnist
from ml.fashion_mnist import IMAGE_SIZE
from ml.models import THUMBNAIL_BLOCK
from ml.ood import FEATURES, RIDGE, MahalanobisScore
from ml.ood_sets import ood_sets

SEED = 0
FLAG_QUANTILE = 0.95
FOLDS = 5
KNN_K = 10
KNN_BANK = 10_000
SHIPPED = f"Mahalanobis, [{FEATURES}]"
WITHOUT_LAYERS = "Mahalanobis, [sqrt(penultimate), logits]"  # the shipped one less the layers
# The shipped one without the 7 x 7 thumbnail that begins the layer statistics.
WITHOUT_THUMBNAIL = "Mahalanobis, [sqrt(penultimate), logits, sqrt(channel statistics)]"
THUMBNAIL = (IMAGE_SIZE // THUMBNAIL_BLOCK) ** 2  # its columns in `layer_statistics`
DEVICE = torch.device("cpu")

# What a classifier's graph gives for a batch of images, by output name (`graph_outputs`).
Outputs = Mapping[str, np.ndarray]
Score = Callable[[Outputs], np.ndarray]
FitScore = Callable[[Outputs, np.ndarray], Score]  # training outputs and labels -> score
Calibrator = Callable[[np.ndarray], np.ndarray]  # logits -> probabilities


# --- OOD scores ---------------------------------------------------------------------------


def precision_of(centred: np.ndarray) -> np.ndarray:
    """The inverse covariance of centred rows, with the same ridge as `ml.ood`."""
    covariance = centred.T @ centred / len(centred)
    ridge = RIDGE * np.trace(covariance) / len(covariance)
    return np.linalg.inv(covariance + ridge * np.eye(len(covariance)))


def squared_distances(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """N x K squared Mahalanobis distances from each row of `features` to each of `means`."""
    projected = features @ precision
    return (
        (projected * features).sum(axis=1, keepdims=True)
        - 2 * projected @ means.T
        + ((means @ precision) * means).sum(axis=1)
    )


def tied_gaussian(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class means and the precision of the covariance the classes share."""
    means = np.stack([features[labels == c].mean(axis=0) for c in range(labels.max() + 1)])
    return means, precision_of(features - means[labels])


def mahalanobis(transform: Callable[[Outputs], np.ndarray]) -> FitScore:
    """Distance to the nearest class mean (Lee et al. 2018) of `transform`ed outputs."""

    def fit(train: Outputs, labels: np.ndarray) -> Score:
        means, precision = tied_gaussian(transform(train), labels)
        return lambda x: squared_distances(transform(x), means, precision).min(axis=1)

    return fit


def relative_mahalanobis(train: Outputs, labels: np.ndarray) -> Score:
    """Ren et al. 2021: the class distance minus the distance to one Gaussian of all features."""
    features = train["penultimate"]
    means, precision = tied_gaussian(features, labels)
    centre = features.mean(axis=0, keepdims=True)
    background = precision_of(features - centre)
    return lambda x: (
        squared_distances(x["penultimate"], means, precision).min(axis=1)
        - squared_distances(x["penultimate"], centre, background)[:, 0]
    )


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def knn_cosine(train: Outputs, labels: np.ndarray) -> Score:
    """Sun et al. 2022: cosine distance to the k-th nearest of a bank of training features."""
    rng = np.random.default_rng(SEED)
    bank = unit(train["penultimate"][rng.choice(len(labels), KNN_BANK, replace=False)])

    def score(x: Outputs) -> np.ndarray:
        similarities = [unit(chunk) @ bank.T for chunk in np.array_split(x["penultimate"], 10)]
        kth = [-np.partition(-s, KNN_K - 1, axis=1)[:, KNN_K - 1] for s in similarities]
        return 1 - np.concatenate(kth)

    return score


def needs_no_fit(score: Score) -> FitScore:
    return lambda _train, _labels: score


def channel_statistics(x: Outputs) -> np.ndarray:
    """`layer_statistics` less the thumbnail it begins with."""
    return x["layer_statistics"][:, THUMBNAIL:]


def thumbnail(x: Outputs, block: int) -> np.ndarray:
    """The means of the images' `block` x `block` squares."""
    side = IMAGE_SIZE // block
    return x["images"].reshape(-1, side, block, side, block).mean(axis=(2, 4)).reshape(-1, side**2)


METHODS: dict[str, FitScore] = {
    "max softmax probability": needs_no_fit(lambda x: -softmax(x["logits"]).max(axis=1)),
    "max logit": needs_no_fit(lambda x: -x["logits"].max(axis=1)),
    "energy": needs_no_fit(lambda x: -logsumexp(x["logits"], axis=1)),
    "Mahalanobis, penultimate": mahalanobis(lambda x: x["penultimate"]),
    "Mahalanobis, sqrt(penultimate)": mahalanobis(lambda x: np.sqrt(x["penultimate"])),
    "Mahalanobis, log1p(penultimate)": mahalanobis(lambda x: np.log1p(x["penultimate"])),
    "Mahalanobis, penultimate^0.25": mahalanobis(lambda x: x["penultimate"] ** 0.25),
    "Mahalanobis, layer_statistics": mahalanobis(lambda x: x["layer_statistics"]),
    "Mahalanobis, sqrt(layer_statistics)": mahalanobis(lambda x: np.sqrt(x["layer_statistics"])),
    WITHOUT_LAYERS: mahalanobis(lambda x: np.hstack([np.sqrt(x["penultimate"]), x["logits"]])),
    "Mahalanobis, [penultimate, logits, layer_statistics]": mahalanobis(
        lambda x: np.hstack([x["penultimate"], x["logits"], x["layer_statistics"]])
    ),
    WITHOUT_THUMBNAIL: mahalanobis(
        lambda x: np.hstack(
            [np.sqrt(x["penultimate"]), x["logits"], np.sqrt(channel_statistics(x))]
        )
    ),
    "Mahalanobis, [sqrt(penultimate), logits, sqrt(14 x 14 thumbnail), sqrt(channel "
    "statistics)]": mahalanobis(
        lambda x: np.hstack(
            [
                np.sqrt(x["penultimate"]),
                x["logits"],
                np.sqrt(thumbnail(x, 2)),
                np.sqrt(channel_statistics(x)),
            ]
        )
    ),
    SHIPPED: MahalanobisScore.fit,  # `ml.ood` itself: its fit gives the score of a batch
    "relative Mahalanobis, penultimate": relative_mahalanobis,
    f"k-NN cosine (k={KNN_K}, {KNN_BANK:,} bank)": knn_cosine,
}


def held_out_flag_rate(scores: np.ndarray, halves: list[np.ndarray]) -> float:
    """Share of one half of validation above the other half's 95% quantile, both ways."""
    a, b = scores[halves[0]], scores[halves[1]]
    return float(
        np.mean(
            [
                np.mean(b > np.quantile(a, FLAG_QUANTILE)),
                np.mean(a > np.quantile(b, FLAG_QUANTILE)),
            ]
        )
    )


def compare_ood(
    train: Outputs, train_labels: np.ndarray, val: Outputs, sets: dict[str, Outputs]
) -> dict[str, dict[str, Any]]:
    """Per method: the separation of each set from validation, and the held-out flag rate."""
    halves = np.array_split(np.random.default_rng(SEED).permutation(len(val["logits"])), 2)
    rows = {}
    for name, fit in METHODS.items():
        score = fit(train, train_labels)
        in_scores = score(val)
        rows[name] = {
            "sets": {s: separation(in_scores, score(outputs)) for s, outputs in sets.items()},
            "flagged": held_out_flag_rate(in_scores, halves),
        }
        rows[name]["worst"] = min(rows[name]["sets"].items(), key=lambda kv: kv[1]["auroc"])
    return rows


# --- Calibration ---------------------------------------------------------------------------


def no_calibration(_logits: np.ndarray, _labels: np.ndarray) -> Calibrator:
    return softmax


def temperature_scaling(logits: np.ndarray, labels: np.ndarray) -> Calibrator:
    temperature = fit_temperature(logits, labels)
    return lambda x: softmax(x, temperature)


def vector_scaling(logits: np.ndarray, labels: np.ndarray) -> Calibrator:
    """Per-class scale `w` and bias `b`, softmax(logits * w + b), minimising the NLL (convex)."""
    classes = logits.shape[1]
    onehot = np.eye(classes)[labels]

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = logits * params[:classes] + params[classes:]
        log_p = z - logsumexp(z, axis=1, keepdims=True)
        dz = (np.exp(log_p) - onehot) / len(labels)
        return -(onehot * log_p).sum() / len(labels), np.r_[(dz * logits).sum(0), dz.sum(0)]

    start = np.r_[np.ones(classes), np.zeros(classes)]
    params = minimize(loss_and_gradient, start, jac=True, method="L-BFGS-B").x
    return lambda x: softmax(x * params[:classes] + params[classes:])


CALIBRATIONS: dict[str, Callable[[np.ndarray, np.ndarray], Calibrator]] = {
    "none (T = 1)": no_calibration,
    "temperature": temperature_scaling,
    "vector scaling": vector_scaling,
}


def compare_calibration(
    logits: np.ndarray, labels: np.ndarray
) -> dict[str, list[dict[str, float]]]:
    """Per method and fold: ECE, NLL, Brier and accuracy on the held-out fold."""
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=SEED).split(logits, labels)
    scores: dict[str, list[dict[str, float]]] = {name: [] for name in CALIBRATIONS}
    for fit_rows, held_out in folds:
        for name, fit in CALIBRATIONS.items():
            calibrate = fit(logits[fit_rows], labels[fit_rows])
            scores[name].append(calibration_metrics(calibrate(logits[held_out]), labels[held_out]))
    return scores


def fold_means(per_fold: list[dict[str, float]]) -> dict[str, float]:
    return {metric: float(np.mean([f[metric] for f in per_fold])) for metric in per_fold[0]}


# --- Report --------------------------------------------------------------------------------


def bold_if(text: str, condition: bool) -> str:
    return f"**{text}**" if condition else text


def calibration_table(folds: dict[str, list[dict[str, float]]]) -> str:
    rows = {name: fold_means(per_fold) for name, per_fold in folds.items()}
    best = {m: min(r[m] for r in rows.values()) for m in ("ece", "nll", "brier")}
    lines = ["| method | ECE | NLL | Brier | accuracy |", "|---|--:|--:|--:|--:|"]
    for name, r in rows.items():
        cells = [
            bold_if(f"{r['ece']:.2%}", r["ece"] == best["ece"]),
            bold_if(f"{r['nll']:.4f}", r["nll"] == best["nll"]),
            bold_if(f"{r['brier']:.4f}", r["brier"] == best["brier"]),
            f"{r['accuracy']:.2%}",
        ]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def ood_table(rows: dict[str, dict[str, Any]], counts: dict[str, int]) -> str:
    best = {s: max(r["sets"][s]["auroc"] for r in rows.values()) for s in counts}
    best_worst = max(r["worst"][1]["auroc"] for r in rows.values())
    header = [f"{s} ({n:,})" for s, n in counts.items()]
    lines = [
        f"| method | {' | '.join(header)} | worst set | validation flagged |",
        "|---|" + "--:|" * (len(counts) + 2),
    ]
    for name, r in rows.items():
        cells = [
            bold_if(f"{r['sets'][s]['auroc']:.4f}", r["sets"][s]["auroc"] == best[s])
            + f" / {r['sets'][s]['fpr_at_95_tpr']:.1%}"
            for s in counts
        ]
        worst_set, worst = r["worst"]
        cells.append(bold_if(f"{worst['auroc']:.4f}", worst["auroc"] == best_worst))
        cells[-1] += f" ({worst_set})"
        cells.append(f"{r['flagged']:.2%}")
        label = f"{name} (shipped)" if name == SHIPPED else name
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def auroc_standard_error(auroc: float, in_count: int, out_count: int) -> float:
    """Hanley and McNeil's (1982) standard error of an AUROC, to judge a gap by."""
    q1, q2 = auroc / (2 - auroc), 2 * auroc**2 / (1 + auroc)
    variance = (
        auroc * (1 - auroc) + (out_count - 1) * (q1 - auroc**2) + (in_count - 1) * (q2 - auroc**2)
    ) / (in_count * out_count)
    return float(np.sqrt(variance))


def ood_conclusion(
    model: str, rows: dict[str, dict[str, Any]], counts: dict[str, int], in_count: int
) -> str:
    ranked = sorted(rows, key=lambda name: rows[name]["worst"][1]["auroc"], reverse=True)
    winner, rank = ranked[0], ranked.index(SHIPPED) + 1
    per_set = "; ".join(
        f"{s}: {max(rows, key=lambda name, s=s: rows[name]['sets'][s]['auroc'])}" for s in counts
    )
    worst_set, best = rows[winner]["worst"][0], rows[winner]["worst"][1]["auroc"]
    error = auroc_standard_error(best, in_count, counts[worst_set])
    shipped_set, shipped = rows[SHIPPED]["worst"][0], rows[SHIPPED]["worst"][1]["auroc"]
    without_set, without = (
        rows[WITHOUT_LAYERS]["worst"][0],
        rows[WITHOUT_LAYERS]["worst"][1]["auroc"],
    )
    no_thumbnail_set, no_thumbnail = (
        rows[WITHOUT_THUMBNAIL]["worst"][0],
        rows[WITHOUT_THUMBNAIL]["worst"][1]["auroc"],
    )
    shipped_text = (
        "the shipped score is that method"
        if winner == SHIPPED
        else f"the shipped {SHIPPED} ranks {rank} of {len(rows)} ({shipped:.4f}, on "
        f"{shipped_set}), {best - shipped:.4f} below it, {(best - shipped) / error:.1f} "
        "standard errors"
    )
    return (
        f"**{model}**: by the worst-set AUROC the best OOD score is {winner} ({best:.4f}, on "
        f"{worst_set}; standard error {error:.4f}); {shipped_text}. Best "
        f"AUROC per set: {per_set}. The layer statistics take the worst-set AUROC of "
        f"{WITHOUT_LAYERS} from {without:.4f} (on {without_set}) to {shipped:.4f} (on "
        f"{shipped_set}), and of these the thumbnail alone from {no_thumbnail:.4f} (on "
        f"{no_thumbnail_set}). The shipped score flags {rows[SHIPPED]['flagged']:.2%} of "
        "held-out validation images at the 95% quantile."
    )


def calibration_conclusion(model: str, folds: dict[str, list[dict[str, float]]]) -> str:
    none, temperature, vector = (fold_means(folds[n]) for n in CALIBRATIONS)
    metrics = {"nll": "NLL", "ece": "ECE", "brier": "Brier"}
    better = [label for m, label in metrics.items() if vector[m] < temperature[m]]
    verdict = f"better on {' and '.join(better)}" if better else "better on none of them"
    nll_wins = sum(
        v["nll"] < t["nll"]
        for v, t in zip(folds["vector scaling"], folds["temperature"], strict=True)
    )
    return (
        f"**{model}**: temperature scaling takes the held-out NLL from {none['nll']:.4f} to "
        f"{temperature['nll']:.4f}, the ECE from {none['ece']:.2%} to {temperature['ece']:.2%} "
        f"and the Brier score from {none['brier']:.4f} to {temperature['brier']:.4f}; vector "
        f"scaling reaches {vector['nll']:.4f}, {vector['ece']:.2%} and {vector['brier']:.4f} "
        f"(accuracy {vector['accuracy']:.2%} against {temperature['accuracy']:.2%}): "
        f"{verdict} than a single temperature, with a lower NLL on {nll_wins} of {FOLDS} "
        "held-out folds."
    )


def outputs_of(model: torch.nn.Module, images: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    """The graph's outputs for uint8 images, and the images themselves in [0, 1]."""
    pixels = np.asarray(images, dtype=np.float32) / 255
    return graph_outputs(model, images, DEVICE) | {"images": pixels}


def study(name: str, checkpoints: Path, data: FashionMNIST) -> dict[str, Any]:
    """Both comparisons for one classifier."""
    model, _card = load_model(name, checkpoints, DEVICE)
    val_images = data.val.images.numpy()
    sets = ood_sets(val_images, SEED)
    val = outputs_of(model, val_images)
    val_labels = data.val.labels.numpy()
    return {
        "calibration": compare_calibration(val["logits"], val_labels),
        "ood": compare_ood(
            outputs_of(model, data.train.images),
            data.train.labels.numpy(),
            val,
            {s: outputs_of(model, images) for s, images in sets.items()},
        ),
        "counts": {s: len(images) for s, images in sets.items()},
    }


def report(results: dict[str, dict[str, Any]], data: FashionMNIST) -> str:
    counts = next(iter(results.values()))["counts"]
    sections = [
        "# OOD scores and calibration methods, compared on validation",
        "",
        "Command: `python scripts/ood_methods.py`. It justifies what `fmnist-calibrate` ships "
        f"(`ml.ood`: {SHIPPED}; `ml.calibration`: one temperature) and never uses the "
        "test split.",
        "",
        f"- models: {', '.join(results)} (checkpoints/); data: Fashion-MNIST, the training "
        f"split ({len(data.train):,} images) for every statistic, the validation split "
        f"({len(data.val):,} images, held out of the training images with split seed "
        f"{data.split_seed}) for every judgement",
        "- OOD sets: `ml.ood_sets.ood_sets` of the validation garments (seed "
        f"{SEED}); `upside_down` is the validation garments turned upside down",
        "- OOD features: outputs of the classifier's served graph "
        "(`ml.calibrate.graph_outputs`): `penultimate` (ReLU units), `logits` and "
        "`layer_statistics` (`ml.models.layer_statistics`): the image as a 7 x 7 thumbnail "
        "(means of 4 x 4 blocks), then each convolution's per-channel mean and root mean "
        "square over the image, the *channel statistics*; a 14 x 14 thumbnail (means of 2 x 2 "
        "blocks) is computed from the images. The shipped score is "
        f"`ml.ood.MahalanobisScore` itself, on [{FEATURES}]",
        "- OOD cells: AUROC (validation against the set) / FPR95, the share of the set that "
        f"passes when 95% of validation does; **bold**: best per column. Validation flagged: "
        f"the share of one half of validation above the other half's {FLAG_QUANTILE:.0%} "
        f"quantile, averaged both ways (halves seed {SEED}); the k-NN bank is drawn with "
        f"seed {SEED}. Conclusion: the standard error of an AUROC is Hanley and McNeil's "
        "(1982), for unpaired samples, so a conservative scale for a gap between two scores "
        "of the same images",
        f"- calibration: {FOLDS}-fold stratified cross-validation within validation (seed "
        f"{SEED}), fitted on {FOLDS - 1} folds, measured on the remaining one (ECE with "
        f"{ECE_BINS} bins), mean over "
        "folds; vector scaling is a per-class scale and bias on the logits, fitted by L-BFGS-B",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, graph outputs computed "
        f"on the CPU; torch {torch.__version__}, scikit-learn {sklearn.__version__}",
        "",
        "## Calibration (held-out folds of validation)",
    ]
    for model, r in results.items():
        sections += ["", f"### {model}", "", calibration_table(r["calibration"])]
    sections += ["", "## OOD detection (validation against each set)"]
    for model, r in results.items():
        sections += ["", f"### {model}", "", ood_table(r["ood"], counts)]
    sections += ["", "## Conclusion", ""]
    for model, r in results.items():
        sections += [ood_conclusion(model, r["ood"], counts, len(data.val)), ""]
    for model, r in results.items():
        sections += [calibration_conclusion(model, r["calibration"]), ""]
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    parser.add_argument("--data-dir", help="folder with the four IDX files (or FMNIST_DATA_DIR)")
    parser.add_argument("--output", type=Path, default=Path("reports/ood_methods.md"))
    args = parser.parse_args(argv)
    data = load_fashion_mnist(args.data_dir)
    results = {name: study(name, args.checkpoints, data) for name in CLASSIFIERS}
    text = report(results, data)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
