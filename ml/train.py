"""The batch script: train any or all models, write checkpoints + cards, draw the figures.

fmnist-train --model all            # the shipped checkpoints (see README for the recorded run)
fmnist-train --model lenet --quick  # smoke run: small subset, one epoch, into runs/quick/
"""

from __future__ import annotations

import argparse
import copy
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ml.augment import augment_batch
from ml.calibrate import fit_trust
from ml.card_schema import command_options
from ml.checkpoint import save_checkpoint
from ml.data import (
    CLASS_NAMES,
    DatasetError,
    FashionMNIST,
    Split,
    load_fashion_mnist,
    to_float,
)
from ml.devices import resolve_device
from ml.embedding import embed, layers_of
from ml.evaluate import batched, classifier_metrics, vae_metrics
from ml.export import export_graphs
from ml.fashion_mnist import PIXEL_MEAN, PIXEL_STD
from ml.models import vae_loss_terms
from ml.pca_map import fit_pca_map
from ml.registry import MODELS, ModelSpec, Recipe, get_spec

QUICK_SIZES = {"train": 2_000, "val": 500, "test": 1_000}
MAP_FIT_SIZE = 10_000  # training images used to fit the PCA map stored in the card


@dataclass
class RunOptions:
    seed: int
    device: torch.device
    checkpoint_dir: Path
    reports_dir: Path
    figures: bool
    command: str


class WeightAverage:
    """An exponential moving average of a model's weights and BatchNorm statistics.

    Validation and the saved checkpoint use the averaged copy: it is less noisy than the last
    step's weights. The decay ramps up over the first steps, so early epochs are not dominated
    by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model)
        self.steps = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        weight = 1 - min(self.decay, (1 + self.steps) / (10 + self.steps))
        averaged_state = self.model.state_dict()
        for key, current in model.state_dict().items():
            if current.is_floating_point():
                averaged_state[key].lerp_(current, weight)
            else:
                averaged_state[key].copy_(current)


def batches(split: Split, batch_size: int, generator: torch.Generator | None = None):
    """(float images, labels) batches; shuffled when a generator is given."""
    order = (
        torch.randperm(len(split), generator=generator)
        if generator is not None
        else torch.arange(len(split))
    )
    for i in range(0, len(split), batch_size):
        idx = order[i : i + batch_size]
        yield to_float(split.images[idx]), split.labels[idx]


def train_epoch(
    spec: ModelSpec,
    model: nn.Module,
    train: Split,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    recipe: Recipe,
    generator: torch.Generator,
    device: torch.device,
    description: str,
    average: WeightAverage | None,
) -> dict[str, float]:
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    n_batches = -(-len(train) // recipe.batch_size)
    progress = tqdm(
        batches(train, recipe.batch_size, generator),
        total=n_batches,
        desc=description,
        leave=False,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    for x, y in progress:
        x = augment_batch(x, recipe.augmentations, generator)
        x, y = x.to(device), y.to(device)
        if spec.kind == "classifier":
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
            correct += (logits.argmax(1) == y).sum().item()
        else:
            mean, log_variance = model.encode(x)
            z = model.reparameterise(mean, log_variance)
            bce, kl = vae_loss_terms(model.decode_logits(z), x, mean, log_variance)
            loss = (bce + kl).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if average is not None:
            average.update(model)
        total_loss += loss.item() * len(y)
        seen += len(y)
        progress.set_postfix(loss=f"{total_loss / seen:.4f}")
    metrics = {"train_loss": total_loss / seen}
    if spec.kind == "classifier":
        metrics["train_accuracy"] = correct / seen
    return metrics


def validate(
    spec: ModelSpec, model: nn.Module, split: Split, device: torch.device, seed: int
) -> dict[str, float]:
    """Validation metrics; the VAE's latent samples are drawn with the run's seed, as in the
    final metrics, so that the selected epoch's row and the card's validation figures agree."""
    if spec.kind == "classifier":
        m = classifier_metrics(model, split, device)
        return {"val_loss": m["loss"], "val_accuracy": m["accuracy"]}
    m = vae_metrics(model, split, device, seed)
    return {"val_loss": m["loss"], "val_bce": m["bce"], "val_kl": m["kl"]}


def is_better(spec: ModelSpec, current: dict[str, float], best: dict[str, float] | None) -> bool:
    if best is None:
        return True
    if spec.kind == "classifier":
        return current["val_accuracy"] > best["val_accuracy"]
    return current["val_loss"] < best["val_loss"]


def pca_maps(model: nn.Module, train: Split, device: torch.device, seed: int) -> dict[str, Any]:
    """The training-set PCA map of every layer the model can embed, for the card."""
    subset = train.subset(torch.arange(min(MAP_FIT_SIZE, len(train))))
    labels = subset.labels.numpy()
    maps = {}
    for layer in layers_of(model):
        vectors = batched(lambda x, layer=layer: embed(model, x, layer), subset.images, device)
        maps[layer] = fit_pca_map(vectors.numpy().astype(np.float64), labels, seed=seed)
    return maps


def train_model(
    spec: ModelSpec, data: FashionMNIST, recipe: Recipe, options: RunOptions
) -> dict[str, Any]:
    """Train one model with `recipe`, keep the best validation epoch, evaluate and save it."""
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    device = options.device
    model = spec.create().to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    steps_per_epoch = -(-len(data.train) // recipe.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.lr, epochs=recipe.epochs, steps_per_epoch=steps_per_epoch
    )
    average = WeightAverage(model, recipe.weight_average) if recipe.weight_average else None
    evaluated = average.model if average else model
    history: list[dict[str, float]] = []
    best: dict[str, float] | None = None
    best_state: dict[str, torch.Tensor] = {}
    started = time.perf_counter()
    for epoch in range(1, recipe.epochs + 1):
        epoch_start = time.perf_counter()
        row: dict[str, float] = {"epoch": epoch}
        row |= train_epoch(
            spec,
            model,
            data.train,
            optimizer,
            scheduler,
            recipe,
            generator,
            device,
            f"{spec.name} {epoch}/{recipe.epochs}",
            average,
        )
        row |= validate(spec, evaluated, data.val, device, options.seed)
        row["seconds"] = round(time.perf_counter() - epoch_start, 2)
        row = {k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}
        history.append(row)
        print(f"{spec.name} " + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
        if is_better(spec, row, best):
            best = row
            best_state = {k: v.detach().clone() for k, v in evaluated.state_dict().items()}
    train_seconds = time.perf_counter() - started
    model.load_state_dict(best_state)
    model.eval()

    if spec.kind == "classifier":
        metrics = {
            "validation": classifier_metrics(model, data.val, device),
            "test": classifier_metrics(model, data.test, device),
        }
    else:
        metrics = {
            "validation": vae_metrics(model, data.val, device, options.seed),
            "test": vae_metrics(model, data.test, device, options.seed),
        }
    card = {
        "kind": spec.kind,
        "description": spec.description,
        "architecture": type(model).__name__,
        "hyper_parameters": spec.hyper_parameters.model_dump(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "class_names": list(CLASS_NAMES),
        "input": {
            "shape": [1, 28, 28],
            "range": [0.0, 1.0],
            "polarity": "light garment on dark background",
            "normalisation": {"mean": PIXEL_MEAN, "std": PIXEL_STD, "applied_in": "forward"},
        },
        "training": {
            "command": options.command,
            "seed": options.seed,
            "recipe": asdict(recipe),
            "optimizer": "AdamW with a one-cycle learning-rate schedule"
            + (f", weights averaged (EMA {recipe.weight_average})" if average else ""),
            "selected_epoch": best["epoch"] if best else None,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "seconds": round(train_seconds, 1),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "data": {
                "source": str(data.source),
                "train": len(data.train),
                "val": len(data.val),
                "test": len(data.test),
            },
            "split": {"seed": data.split_seed, "val_indices_sha256": data.val.indices_sha256()},
        },
        "history": history,
        "metrics": metrics,
        "embedding_maps": pca_maps(model, data.train, device, options.seed),
        "versions": library_versions(),
    }
    card = save_checkpoint(spec.name, model, card, options.checkpoint_dir)
    card = export_graphs(spec.name, model, card, options.checkpoint_dir)
    reliability_bins = None
    if spec.kind == "classifier":
        card, reliability_bins = fit_trust(
            spec.name, model, card, data, options.checkpoint_dir, device, options.seed
        )
    if options.figures:
        from ml.figures import draw_figures, plot_reliability

        draw_figures(spec.name, model, card, data, options.reports_dir, device)
        if reliability_bins is not None:
            path = options.reports_dir / f"{spec.name}_reliability.png"
            plot_reliability(reliability_bins, spec.name, path)
    return card


def library_versions() -> dict[str, str]:
    """What a rerun must match to reproduce the weights bit for bit: the libraries, and the CPU
    kernels PyTorch picked on this machine (AVX2, AVX512, ...), which round differently."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "platform": platform.platform(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def rerun_command(argv: list[str], seed: int, device: torch.device) -> str:
    """The command as typed, plus the settings it left to defaults or to the machine: the seed,
    the device it resolved to and the thread count (CPU training is deterministic only for a
    fixed thread count), so that the card's command alone reruns the same training."""
    typed = command_options(shlex.join(argv))
    settings = {
        "--seed": str(seed),
        "--device": str(device),
        "--threads": str(torch.get_num_threads()),
    }
    added = [
        word
        for option, value in settings.items()
        if typed.get(option) != value
        for word in (option, value)
    ]
    return shlex.join(["fmnist-train", *argv, *added])


def summary_row(card: dict[str, Any]) -> str:
    test = card["metrics"]["test"]
    if card["kind"] == "classifier":
        result = f"test accuracy {test['accuracy'] * 100:.2f}%"
    else:
        result = f"test BCE+KL {test['loss']:.2f} nats (BCE {test['bce']:.2f}, KL {test['kl']:.2f})"
    training = card["training"]
    return (
        f"{card['name']:<6} {card['parameters']:>9,} params  epoch {training['selected_epoch']:>3}"
        f"  {training['seconds']:>7.1f} s  {result}"
    )


def quick_subset(data: FashionMNIST, seed: int) -> FashionMNIST:
    generator = torch.Generator().manual_seed(seed)

    def take(split: Split, n: int) -> Split:
        return split.subset(torch.randperm(len(split), generator=generator)[:n])

    return FashionMNIST(
        train=take(data.train, QUICK_SIZES["train"]),
        val=take(data.val, QUICK_SIZES["val"]),
        test=take(data.test, QUICK_SIZES["test"]),
        source=data.source,
        split_seed=data.split_seed,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fmnist-train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="all", choices=["all", *MODELS])
    parser.add_argument("--epochs", type=int, help="default: the model's recipe")
    parser.add_argument("--batch-size", type=int, help="default: the model's recipe")
    parser.add_argument("--lr", type=float, help="peak learning rate; default: the model's recipe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--data-dir", help="folder with the four IDX files (or FMNIST_DATA_DIR)")
    parser.add_argument(
        "--download", action="store_true", help="let torchvision fetch the data into ./data"
    )
    parser.add_argument("--out", type=Path, help="checkpoint folder (default checkpoints/)")
    parser.add_argument("--reports", type=Path, help="figure folder (default reports/)")
    parser.add_argument("--no-figures", action="store_true", help="skip drawing the figures")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2,000 training images, one epoch, into runs/quick/",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quick_root = Path("runs/quick")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
        data = load_fashion_mnist(args.data_dir, download=args.download)
    except (ValueError, DatasetError) as exc:
        print(f"fmnist-train: error: {exc}", file=sys.stderr)
        return 2
    if args.quick:
        data = quick_subset(data, args.seed)
    options = RunOptions(
        seed=args.seed,
        device=device,
        checkpoint_dir=args.out
        or (quick_root / "checkpoints" if args.quick else Path("checkpoints")),
        reports_dir=args.reports or (quick_root / "reports" if args.quick else Path("reports")),
        figures=not args.no_figures,
        command=rerun_command(sys.argv[1:] if argv is None else argv, args.seed, device),
    )
    print(
        f"data: {data.source} (train {len(data.train)}, val {len(data.val)}, test {len(data.test)})"
        f"; device {device}; threads {torch.get_num_threads()}",
        flush=True,
    )
    names = list(MODELS) if args.model == "all" else [args.model]
    cards = []
    for name in names:
        spec = get_spec(name)
        overrides = {
            k: v
            for k, v in (
                ("epochs", 1 if args.quick else args.epochs),
                ("batch_size", args.batch_size),
                ("lr", args.lr),
            )
            if v
        }
        cards.append(train_model(spec, data, replace(spec.recipe, **overrides), options))
    if options.figures:
        from ml.report import load_cards, write_reports_readme

        write_reports_readme(load_cards(options.checkpoint_dir), options.reports_dir / "README.md")
    print("\nsummary (best validation epoch, evaluated on the test set):")
    print("\n".join(map(summary_row, cards)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
