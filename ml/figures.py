"""The figures in reports/: curves, PCA / t-SNE maps, confusion matrices, VAE grids.

Each function writes one PNG and returns its path; `draw_figures` draws a model's whole set and
prints how long each figure took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.manifold import TSNE
from torch import nn

from ml.data import CLASS_NAMES, FashionMNIST, to_float
from ml.embedding import CLASSIFIER_LAYERS, embed
from ml.evaluate import batched
from ml.models import kl_per_dimension
from ml.pca_map import project

TSNE_POINTS = 2_000
# The figures each kind of model gets, as `<model>_<figure>.png` in the reports folder.
FIGURES = {
    "classifier": ("curves", "confusion", "pca", "tsne", "mistakes"),
    "autoencoder": (
        "curves",
        "reconstructions",
        "interpolations",
        "samples",
        "latent_usage",
        "latent_pca",
        "latent_tsne",
    ),
}
COLOURS = colormaps["tab10"]


def _subplots(rows: int, columns: int, figsize: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A figure without pyplot's global state (safe in threads, no display backend needed)."""
    fig = Figure(figsize=figsize)
    return fig, np.asarray(fig.subplots(rows, columns, squeeze=False))


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _scatter_by_class(ax: Axes, xy: np.ndarray, labels: np.ndarray, title: str) -> None:
    for c, name in enumerate(CLASS_NAMES):
        points = xy[labels == c]
        ax.scatter(points[:, 0], points[:, 1], s=3, color=COLOURS(c), label=name, alpha=0.7)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def _class_legend(fig: Figure, ax: Axes) -> None:
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, loc="center right", markerscale=4, frameon=False)


def _image_grid(ax: Axes, images: np.ndarray, columns: int) -> None:
    """Tile N x 28 x 28 images in [0, 1] into one picture with 2-pixel gaps."""
    rows = -(-len(images) // columns)
    canvas = np.ones((rows * 30, columns * 30))
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * 30 + 1 : r * 30 + 29, c * 30 + 1 : c * 30 + 29] = image
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")


def plot_curves(card: dict, path: Path) -> Path:
    """Loss and accuracy (classifiers) or loss, BCE and KL (VAE) per epoch, train and validation.

    The training figures are the running means over the epoch's batches as trained (augmented,
    dropout on, label-smoothed loss, the weights being trained), the validation ones plain (with
    the averaged weights where the recipe averages them), so the two curves differ even where
    the model does not overfit; the legend says so.
    """
    history, name = card["history"], card["name"]
    epochs = [row["epoch"] for row in history]
    classifier = "val_accuracy" in history[0]
    fig, axes = _subplots(1, 2, (10, 3.8))
    axes = axes[0]
    axes[0].plot(epochs, [r["train_loss"] for r in history], label=_train_label(card))
    axes[0].plot(epochs, [r["val_loss"] for r in history], label=_validation_label(card))
    axes[0].set_title(f"{name}: loss" + ("" if classifier else " (BCE + KL, nats per image)"))
    if classifier:
        axes[1].plot(epochs, [r["train_accuracy"] * 100 for r in history], label=_train_label(card))
        axes[1].plot(
            epochs, [r["val_accuracy"] * 100 for r in history], label=_validation_label(card)
        )
        axes[1].set_title(f"{name}: accuracy (%)")
    else:
        axes[1].plot(epochs, [r["val_bce"] for r in history], label="validation BCE")
        axes[1].plot(epochs, [r["val_kl"] for r in history], label="validation KL")
        axes[1].set_title(f"{name}: loss terms (nats per image)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def _train_label(card: dict) -> str:
    recipe = card["training"]["recipe"]
    conditions = []
    if recipe.get("augmentations"):
        conditions.append("augmented")
    if recipe.get("label_smoothing"):
        conditions.append(f"label smoothing {recipe['label_smoothing']}")
    return f"train ({', '.join(conditions)})" if conditions else "train"


def _validation_label(card: dict) -> str:
    averaged = card["training"]["recipe"].get("weight_average")
    return "validation (averaged weights)" if averaged else "validation"


def plot_pca_maps(
    layers: dict[str, np.ndarray], labels: np.ndarray, card: dict[str, Any], path: Path
) -> Path:
    """Test images on the training-set PCA map stored in the card, one panel per layer: the
    map `/embed` places its inputs on (fitted by the training script on training images)."""
    return _maps(
        {
            f"{card['name']}: {_layer_name(layer)} ({vectors.shape[1]}-d), {len(vectors):,} test "
            "images\non the training-set PCA map (as /embed)": project(
                vectors, card["embedding_maps"][layer]
            )
            for layer, vectors in layers.items()
        },
        labels,
        path,
    )


def plot_tsne_maps(
    layers: dict[str, np.ndarray], labels: np.ndarray, name: str, path: Path
) -> Path:
    """A fixed-seed t-SNE of test images, one panel per layer (fitted here, on these images)."""
    return _maps(
        {
            f"{name}: t-SNE of {_layer_name(layer)} ({vectors.shape[1]}-d),\n"
            f"{len(vectors):,} test images": TSNE(
                n_components=2, init="pca", random_state=0, perplexity=30
            ).fit_transform(vectors)
            for layer, vectors in layers.items()
        },
        labels,
        path,
    )


def _layer_name(layer: str) -> str:
    return "latent mean" if layer == "latent" else layer


def _maps(panels: dict[str, np.ndarray], labels: np.ndarray, path: Path) -> Path:
    """One scatter per titled set of 2-D points, coloured by class, with one legend."""
    fig, axes = _subplots(1, len(panels), (5.2 * len(panels) + 1.8, 5))
    for ax, (title, xy) in zip(axes[0], panels.items(), strict=True):
        _scatter_by_class(ax, xy, labels, title)
    _class_legend(fig, axes[0][0])
    fig.subplots_adjust(right=0.82)
    return _save(fig, path)


def plot_confusion(confusion: list[list[int]], name: str, path: Path) -> Path:
    matrix = np.asarray(confusion)
    fig, axes = _subplots(1, 1, (7, 6))
    ax = axes[0, 0]
    ax.imshow(matrix, cmap="Blues")
    for (r, c), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        ax.text(c, r, str(count), ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(10), CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(10), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = matrix.trace() / matrix.sum() * 100
    ax.set_title(f"{name}: test confusion matrix ({accuracy:.2f}% correct)")
    return _save(fig, path)


RELIABILITY_MIN_IMAGES = 20  # bins with fewer images are too noisy to draw


def plot_reliability(bins: dict[str, dict[str, list[dict]]], name: str, path: Path) -> Path:
    """Reliability diagrams: per confidence bin, accuracy against mean confidence, before and
    after calibration, one panel per split (`bins` as `ml.calibration.reliability` gives them)."""
    fig, axes = _subplots(1, len(bins), (5 * len(bins), 4.8))
    for ax, (split, versions) in zip(axes[0], bins.items(), strict=True):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
        for (version, rows), colour in zip(versions.items(), ("tab:red", "tab:blue"), strict=True):
            drawn = [r for r in rows if r["count"] >= RELIABILITY_MIN_IMAGES]
            confidence = [r["confidence"] for r in drawn]
            accuracy = [r["accuracy"] for r in drawn]
            total = sum(r["count"] for r in rows)
            sizes = [max(6.0, 400 * r["count"] / total) for r in drawn]
            ax.plot(confidence, accuracy, color=colour, label=version)
            ax.scatter(confidence, accuracy, s=sizes, color=colour, alpha=0.6)
        ax.set_xlim(0.2, 1)
        ax.set_ylim(0.2, 1)
        ax.set_xlabel("mean confidence in the bin")
        ax.set_ylabel("accuracy in the bin")
        ax.set_title(f"{name}: {split}", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(
        f"15 equal-width bins; bins of at least {RELIABILITY_MIN_IMAGES} images, dot area by "
        "images",
        fontsize=8,
        y=0.02,
    )
    return _save(fig, path)


def plot_mistakes(
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    name: str,
    path: Path,
    count: int = 24,
) -> Path:
    """The test images the model got wrong with the highest confidence."""
    predicted = probabilities.argmax(1)
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:count]
    columns = 8
    rows = max(1, -(-len(worst) // columns))
    fig, axes = _subplots(rows, columns, (columns * 1.6, rows * 2.0))
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, worst, strict=False):
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        ax.set_title(
            f"{CLASS_NAMES[predicted[i]]} {probabilities[i, predicted[i]]:.0%}\n"
            f"(is {CLASS_NAMES[labels[i]]})",
            fontsize=7,
        )
    fig.suptitle(f"{name}: most confident mistakes on the test set (predicted, confidence, truth)")
    return _save(fig, path)


def plot_reconstructions(originals: np.ndarray, reconstructions: np.ndarray, path: Path) -> Path:
    fig, axes = _subplots(2, 1, (12, 3.4))
    axes = axes[:, 0]
    _image_grid(axes[0], originals, len(originals))
    _image_grid(axes[1], reconstructions, len(reconstructions))
    axes[0].set_title("test images (top) and their VAE reconstructions (bottom)")
    return _save(fig, path)


def plot_interpolations(rows: list[tuple[str, np.ndarray]], path: Path) -> Path:
    """One strip of decoded frames per pair of images, endpoints included."""
    fig, axes = _subplots(len(rows), 1, (12, 1.25 * len(rows)))
    for ax, (title, frames) in zip(axes[:, 0], rows, strict=True):
        _image_grid(ax, frames, len(frames))
        ax.set_title(title, fontsize=8, loc="left")
    fig.suptitle("VAE: linear interpolation between latent means")
    return _save(fig, path)


def plot_samples(samples: np.ndarray, path: Path) -> Path:
    fig, axes = _subplots(1, 1, (7, 7))
    ax = axes[0, 0]
    _image_grid(ax, samples, 8)
    ax.set_title("VAE: samples decoded from the prior N(0, I)")
    return _save(fig, path)


def plot_latent_usage(kl_per_dimension: np.ndarray, path: Path) -> Path:
    """Mean KL of each latent dimension over the test set: the dimensions the VAE actually uses."""
    order = np.argsort(-kl_per_dimension)
    active = int((kl_per_dimension > 0.01).sum())
    fig, axes = _subplots(1, 1, (9, 3.2))
    ax = axes[0, 0]
    ax.bar(range(len(order)), kl_per_dimension[order], color="tab:blue")
    ax.set_xlabel("latent dimension (sorted)")
    ax.set_ylabel("mean KL (nats)")
    ax.set_title(
        f"VAE: information per latent dimension, {active} of {len(order)} active (KL > 0.01 nats)"
    )
    return _save(fig, path)


def _timed(label: str, draw: Callable[[], Path]) -> Path:
    started = time.perf_counter()
    path = draw()
    print(f"  figure {path} ({label}): {time.perf_counter() - started:.1f} s", flush=True)
    return path


def classifier_figures(
    name: str,
    model: nn.Module,
    card: dict[str, Any],
    data: FashionMNIST,
    out: Path,
    device: torch.device,
) -> list[Path]:
    test = data.test
    labels = test.labels.numpy()
    vectors = {
        layer: batched(lambda x, layer=layer: embed(model, x, layer), test.images, device).numpy()
        for layer in CLASSIFIER_LAYERS
    }
    probabilities = torch.softmax(torch.from_numpy(vectors["logits"]), 1).numpy()
    subset = _tsne_subset(len(test))
    return [
        _timed("curves", lambda: plot_curves(card, out / f"{name}_curves.png")),
        _timed("PCA", lambda: plot_pca_maps(vectors, labels, card, out / f"{name}_pca.png")),
        _timed(
            "t-SNE",
            lambda: plot_tsne_maps(
                {k: v[subset] for k, v in vectors.items()},
                labels[subset],
                name,
                out / f"{name}_tsne.png",
            ),
        ),
        _timed(
            "confusion",
            lambda: plot_confusion(
                card["metrics"]["test"]["confusion_matrix"], name, out / f"{name}_confusion.png"
            ),
        ),
        _timed(
            "mistakes",
            lambda: plot_mistakes(
                test.images.numpy(), labels, probabilities, name, out / f"{name}_mistakes.png"
            ),
        ),
    ]


def _tsne_subset(count: int) -> np.ndarray:
    """A fixed-seed subset of the test set: t-SNE on all 10,000 points would take minutes."""
    return np.random.default_rng(0).choice(count, min(TSNE_POINTS, count), replace=False)


def _first_of_each_class(labels: np.ndarray) -> list[int]:
    return [int(np.flatnonzero(labels == c)[0]) for c in range(len(CLASS_NAMES))]


@torch.inference_mode()
def vae_figures(
    name: str,
    model: nn.Module,
    card: dict[str, Any],
    data: FashionMNIST,
    out: Path,
    device: torch.device,
) -> list[Path]:
    test = data.test
    labels = test.labels.numpy()
    encoded = batched(lambda x: torch.cat(model.encode(x), 1), test.images, device)
    means, log_variances = encoded.chunk(2, dim=1)
    kl_by_dimension = kl_per_dimension(means, log_variances).mean(0).numpy()
    means = means.numpy()
    firsts = _first_of_each_class(labels)
    seconds = [int(np.flatnonzero(labels == c)[1]) for c in range(len(CLASS_NAMES))]

    def decode(z: np.ndarray) -> np.ndarray:
        return model.decode(torch.from_numpy(z).float().to(device)).cpu().numpy()[:, 0]

    def interpolation_rows() -> list[tuple[str, np.ndarray]]:
        pairs = [(firsts[c], seconds[c]) for c in (0, 7, 9)]  # within a class
        pairs += [(firsts[a], firsts[b]) for a, b in ((0, 3), (7, 9), (1, 8), (2, 4))]  # across
        steps = np.linspace(0, 1, 10)[:, None]
        return [
            (
                f"{CLASS_NAMES[labels[a]]} -> {CLASS_NAMES[labels[b]]}",
                decode((1 - steps) * means[a] + steps * means[b]),
            )
            for a, b in pairs
        ]

    shown = firsts + seconds[:6]
    originals = to_float(test.images[shown]).numpy()[:, 0]
    samples = torch.randn(64, model.latent_dim, generator=torch.Generator().manual_seed(0))
    subset = _tsne_subset(len(test))
    return [
        _timed("curves", lambda: plot_curves(card, out / f"{name}_curves.png")),
        _timed(
            "reconstructions",
            lambda: plot_reconstructions(
                originals, decode(means[shown]), out / f"{name}_reconstructions.png"
            ),
        ),
        _timed(
            "interpolations",
            lambda: plot_interpolations(interpolation_rows(), out / f"{name}_interpolations.png"),
        ),
        _timed(
            "samples", lambda: plot_samples(decode(samples.numpy()), out / f"{name}_samples.png")
        ),
        _timed(
            "latent usage",
            lambda: plot_latent_usage(kl_by_dimension, out / f"{name}_latent_usage.png"),
        ),
        _timed(
            "latent map",
            lambda: plot_tsne_maps(
                {"latent": means[subset]}, labels[subset], name, out / f"{name}_latent_tsne.png"
            ),
        ),
        _timed(
            "latent PCA",
            lambda: plot_pca_maps({"latent": means}, labels, card, out / f"{name}_latent_pca.png"),
        ),
    ]


def draw_figures(
    name: str,
    model: nn.Module,
    card: dict[str, Any],
    data: FashionMNIST,
    out: Path,
    device: torch.device,
) -> list[Path]:
    draw = classifier_figures if card["kind"] == "classifier" else vae_figures
    return draw(name, model.eval(), card, data, Path(out), device)
