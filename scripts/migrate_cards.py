"""Add to format-1 cards what the trainer records since format 2 and can be derived after the fact:

- `training.split`: the validation split's seed and the sha256 of its indices. Format-1 cards
  were all trained with `load_fashion_mnist`'s fixed split seed (0; `fmnist-train` has no option
  for it), so the hash is recomputed from that seed, and only with the PyTorch version the card
  records (the permutation is `torch.randperm`'s). `recorded_by` says it was added afterwards.
- the VAE's `bce_floor` on each split (`ml.evaluate.bce_floor`), measured on the data.

The weights, metrics and recorded command are left as they are; the card keeps format 1.

    python scripts/migrate_cards.py [--checkpoints checkpoints] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ml.cards import read_card
from ml.checkpoint import write_card
from ml.data import SPLIT_SEED, load_fashion_mnist
from ml.evaluate import bce_floor
from ml.report import load_cards

RECORDED_BY = (
    "scripts/migrate_cards.py, after training: recomputed from the split seed, which "
    "load_fashion_mnist fixed and format-1 cards did not record"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    data = load_fashion_mnist(args.data_dir, split_seed=SPLIT_SEED)
    splits = {"validation": data.val, "test": data.test}
    for name, card in load_cards(args.checkpoints).items():
        if card["format"] != 1:
            continue
        if card["versions"]["torch"] != torch.__version__:
            print(
                f"{name}: trained with torch {card['versions']['torch']}, this is "
                f"{torch.__version__}: its split cannot be recomputed here",
                file=sys.stderr,
            )
            return 1
        training = card["training"]
        training.setdefault(
            "split",
            {
                "seed": SPLIT_SEED,
                "val_indices_sha256": data.val.indices_sha256(),
                "recorded_by": RECORDED_BY,
            },
        )
        if card["kind"] == "autoencoder":
            for split, metrics in card["metrics"].items():
                metrics.setdefault("bce_floor", bce_floor(splits[split].images))
        write_card(name, card, args.checkpoints)
        read_card(name, args.checkpoints)  # still valid
        print(f"{name}: split {training['split']['val_indices_sha256'][:12]}... recorded")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
