"""The numbers and figures people read are the ones the shipped checkpoints produce."""

from __future__ import annotations

import re
from pathlib import Path

from ml.report import TABLE_END, TABLE_START, load_cards, markers, results_table, trust_tables

ROOT = Path(__file__).resolve().parents[2]


def test_readme_results_table_matches_the_cards() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(TABLE_START) + len(TABLE_START) : readme.index(TABLE_END)]
    assert block.strip() == results_table(load_cards(ROOT / "checkpoints"))


def test_readme_trust_tables_match_the_cards() -> None:
    start, end = markers("trust")
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(start) + len(start) : readme.index(end)]
    assert block.strip() == trust_tables(load_cards(ROOT / "checkpoints"))
    assert "| `mynet` | 0.646 | test |" in block  # a real row, not an empty table


def test_reports_readme_shows_figures_that_exist() -> None:
    text = (ROOT / "reports" / "README.md").read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert len(figures) >= 16
    missing = [f for f in figures if not (ROOT / "reports" / f).is_file()]
    assert not missing


def test_readme_benchmark_block_is_the_measured_report() -> None:
    """The README's benchmark figures are the ones `scripts/bench_serve.py` last wrote."""
    start, end = markers("bench")
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(start) + len(start) : readme.index(end)].strip()
    report = (ROOT / "reports" / "bench_serve.md").read_text()
    assert "| service |" in block and "| naive |" in block
    assert block in report
