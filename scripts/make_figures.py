"""Redraw every figure in reports/ from the shipped checkpoints, rewrite reports/README.md and the
results and trust tables in the top-level README (the reliability diagrams are drawn by
`fmnist-calibrate`, which fits what they show).

    python scripts/make_figures.py [--checkpoints checkpoints] [--reports reports] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ml.checkpoint import load_model
from ml.data import load_fashion_mnist
from ml.devices import resolve_device
from ml.figures import draw_figures
from ml.report import (
    load_cards,
    replace_block,
    results_table,
    trust_tables,
    write_reports_readme,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--data-dir")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    args = parser.parse_args()

    device = resolve_device(args.device)
    data = load_fashion_mnist(args.data_dir)
    cards = load_cards(args.checkpoints)
    for name in cards:
        started = time.perf_counter()
        model, card = load_model(name, args.checkpoints, device)
        draw_figures(name, model, card, data, args.reports, device)
        print(f"{name}: figures in {time.perf_counter() - started:.1f} s")
    print(f"wrote {write_reports_readme(cards, args.reports / 'README.md')}")
    if args.readme.is_file():
        text = replace_block(args.readme.read_text(), "results", results_table(cards))
        args.readme.write_text(replace_block(text, "trust", trust_tables(cards)))
        print(f"updated the results and trust tables in {args.readme}")


if __name__ == "__main__":
    main()
