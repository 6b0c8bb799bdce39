"""Markdown written from the checkpoint cards, so that no reported number is typed by hand.

`results_table` is pasted between markers in the top-level README by `scripts/make_figures.py`
(a test checks it still matches the cards); `write_reports_readme` writes reports/README.md.
"""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path
from typing import Any

from ml.cards import read_card
from ml.figures import FIGURES
from ml.registry import MODELS

ORIGINAL_REPORT = {"lenet": "79%", "mynet": "84%"}
SVC_BASELINE = "89.7% (SVC, the best classical model in the Fashion-MNIST benchmark)"


def markers(name: str) -> tuple[str, str]:
    """The comment lines around a generated block of a markdown file."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


TABLE_START, TABLE_END = markers("results")


def load_cards(checkpoint_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    folder = Path(checkpoint_dir)
    return {name: read_card(name, folder) for name in MODELS if (folder / f"{name}.json").is_file()}


def _minutes(card: dict[str, Any]) -> str:
    return f"{card['training']['seconds'] / 60:.1f} min"


def _accuracy(metrics: dict[str, Any]) -> str:
    """Accuracy with its standard error (binomial, from the number of images)."""
    accuracy = metrics["accuracy"]
    error = math.sqrt(accuracy * (1 - accuracy) / metrics["count"])
    return f"{accuracy * 100:.2f}% ± {error * 100:.2f}"


def _nats(metrics: dict[str, Any]) -> str:
    floor = f", floor {metrics['bce_floor']:.2f}" if "bce_floor" in metrics else ""
    return f"{metrics['loss']:.2f} nats (BCE {metrics['bce']:.2f}{floor}; KL {metrics['kl']:.2f})"


def results_table(cards: dict[str, dict[str, Any]]) -> str:
    """Validation beside test figures for every card, then the notes that qualify them."""
    lines = [
        "| model | parameters | validation (5,000 images) | test (10,000 images) "
        "| original report | epochs (best on validation) | training time |",
        "|---|---:|---|---|---|---|---|",
    ]
    for name, card in cards.items():
        metrics, training = card["metrics"], card["training"]
        result = _accuracy if card["kind"] == "classifier" else _nats
        lines.append(
            f"| `{name}` | {card['parameters']:,} | {result(metrics['validation'])} "
            f"| **{result(metrics['test'])}** | {ORIGINAL_REPORT.get(name, '-')} "
            f"| {len(card['history'])} ({training['selected_epoch']}) | {_minutes(card)} |"
        )
    lines.append(f"| classical baseline | | | {SVC_BASELINE} | | | |")
    return "\n".join(
        [*lines, "", *(textwrap.fill(note, 100, break_on_hyphens=False) for note in NOTES)]
    )


NOTES = [
    "Accuracies are given ± one standard error (binomial). The VAE's figure is nats per image: "
    "a one-sample negative ELBO (binary cross-entropy of the pixels plus the KL term, one latent "
    "sampled per image), the convention of pytorch/examples. The pixels are grey levels, not "
    "binary, so this Bernoulli likelihood is not a normalised density: the BCE cannot go below "
    "the floor given (the pixels' own binary entropy, reached only by a perfect reconstruction), "
    "and the figure is not comparable with published negative log-likelihoods on binarised data.",
]


def trust_tables(cards: dict[str, dict[str, Any]]) -> str:
    """Each classifier's calibration (before and after its temperature) and how its OOD score
    separates the test set from the sets of `ml.ood_sets`, from the cards' trust records."""
    classifiers = {name: card for name, card in cards.items() if card.get("calibration")}
    lines = [
        "| model | temperature | split | ECE | NLL | Brier | accuracy |",
        "|---|--:|---|--:|--:|--:|--:|",
    ]
    for name, card in classifiers.items():
        calibration = card["calibration"]
        for split, versions in calibration["metrics"].items():
            before, after = versions["uncalibrated"], versions["calibrated"]
            lines.append(
                f"| `{name}` | {calibration['temperature']:.3f} | {split} "
                f"| {before['ece']:.2%} → **{after['ece']:.2%}** "
                f"| {before['nll']:.3f} → **{after['nll']:.3f}** "
                f"| {before['brier']:.4f} → **{after['brier']:.4f}** "
                f"| {after['accuracy']:.2%} |"
            )
    sets = list(next(iter(classifiers.values()))["ood"]["sets"]) if classifiers else []
    lines += [
        "",
        "| model | "
        + " | ".join(f"{s.replace('_', '-')} (AUROC / missed)" for s in sets)
        + " | test garments flagged |",
        "|---|" + "--:|" * (len(sets) + 1),
    ]
    for name, card in classifiers.items():
        ood = card["ood"]
        rate = ood["default_flag_rate"]
        cells = [
            f"{ood['sets'][s]['auroc']:.3f} / {ood['sets'][s]['fpr_at_95_tpr']:.1%}" for s in sets
        ]
        flagged = f"{ood['flagged']['test'][rate]:.1%} (validation {float(rate):.0%})"
        lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {flagged} |")
    return "\n".join(lines)


def replace_block(text: str, name: str, block: str) -> str:
    """`text` with what lies between the `name` markers replaced by `block`."""
    start_marker, end_marker = markers(name)
    start, end = text.index(start_marker) + len(start_marker), text.index(end_marker)
    return text[:start] + "\n" + block + "\n" + text[end:]


def _per_class_table(card: dict[str, Any]) -> str:
    per_class = card["metrics"]["test"]["per_class_accuracy"]
    header = "| " + " | ".join(per_class) + " |"
    rule = "|" + "---:|" * len(per_class)
    values = "| " + " | ".join(f"{v * 100:.1f}" for v in per_class.values()) + " |"
    return "\n".join([header, rule, values])


def _recipe(recipe: dict[str, Any]) -> str:
    return ", ".join(
        f"{key.replace('_', ' ')} {'+'.join(value) if isinstance(value, list) else value}"
        for key, value in recipe.items()
        if value not in (None, [], 0.0)
    )


def write_reports_readme(cards: dict[str, dict[str, Any]], path: Path) -> Path:
    """reports/README.md: the results table, then each model's figures with its numbers."""
    parts = [
        "# Results and figures",
        "",
        "Written by the training script from the checkpoint cards (`checkpoints/*.json`); "
        "regenerate with `python scripts/make_figures.py`. Validation figures use the "
        "5,000-image split held out of the training images, test figures the official "
        "10,000-image test set; see the top-level README for how each was used.",
        "",
        results_table(cards),
        "",
        "Calibration (ECE with 15 bins) and the out-of-distribution score (AUROC against the "
        "test set, and the share of each set missed when 95% of test garments pass; see "
        "`ml/ood_sets.py`), from the cards' `calibration` and `ood` records:",
        "",
        trust_tables(cards),
    ]
    for name, card in cards.items():
        training = card["training"]
        parts += [
            "",
            f"## `{name}`: {card['description']}",
            "",
            f"Trained with `{training['command']}` (seed {training['seed']}) on "
            f"{training['device']} (threads: {training['threads']}) in {_minutes(card)}.",
            f"Recipe: {_recipe(training['recipe'])}; {training['optimizer']}.",
            "",
        ]
        if card["kind"] == "classifier":
            parts += ["Per-class test accuracy (%):", "", _per_class_table(card), ""]
        else:
            parts += [
                f"Latent size {card['hyper_parameters']['latent_dim']}, chosen with headroom: "
                "dimensions the VAE does not need fall back to the prior (KL near 0, see "
                "`vae_latent_usage.png` for how many it uses), so a larger latent costs only "
                "parameters, while a smaller one would cap what it can encode.",
                "",
            ]
        parts += [f"![{name} {figure}]({name}_{figure}.png)" for figure in FIGURES[card["kind"]]]
        if card.get("calibration"):
            parts.append(f"![{name} reliability]({name}_reliability.png)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n")
    return path
