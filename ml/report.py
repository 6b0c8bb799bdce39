"""Markdown written from the checkpoint cards, so that no reported number is typed by hand.

`results_table` is pasted between markers in the top-level README by `scripts/make_figures.py`
(a test checks it still matches the cards); `write_reports_readme` writes reports/README.md.
"""

from __future__ import annotations

import os
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


def results_table(cards: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| model | parameters | test result | original report | epochs (best) | training time |",
        "|---|---:|---|---|---|---|",
    ]
    for name, card in cards.items():
        test = card["metrics"]["test"]
        training = card["training"]
        if card["kind"] == "classifier":
            result = f"**{test['accuracy'] * 100:.2f}%** accuracy"
        else:
            result = (
                f"**{test['loss']:.2f}** nats/image (BCE {test['bce']:.2f} + KL {test['kl']:.2f})"
            )
        lines.append(
            f"| `{name}` | {card['parameters']:,} | {result} | {ORIGINAL_REPORT.get(name, '-')} "
            f"| {len(card['history'])} ({training['selected_epoch']}) | {_minutes(card)} |"
        )
    lines.append(f"| classical baseline | | {SVC_BASELINE} | | | |")
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
        "regenerate with `python scripts/make_figures.py`. Test figures use the official "
        "10,000-image test set; every training choice used the 5,000-image validation split.",
        "",
        results_table(cards),
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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n")
    return path
