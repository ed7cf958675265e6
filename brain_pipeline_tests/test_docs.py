"""The documents a reader trusts: the README's headline figures are rows of results.md's
"Current figures" table, word for word, and every current figure has a date, a commit and a
command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results.md"
DATED = re.compile(r"^20\d\d-\d\d-\d\d, [0-9a-f]{7}(, [0-9a-f]{7})*$")


def table_after(path: Path, heading: str) -> dict[str, list[str]]:
    """The first Markdown table under `heading`: first cell -> the row's cells."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index(heading)
    rows: dict[str, list[str]] = {}
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
            rows[cells[0]] = cells
    return rows


def test_the_readme_headline_rows_are_current_figures_word_for_word() -> None:
    headline = table_after(README, "## Headline results")
    current = table_after(RESULTS, "## Current figures")
    assert (
        headline.pop("topic")
        == current.pop("topic")
        == [
            "topic",
            "figure",
            "date, commit",
            "command",
        ]
    )
    assert headline, "the README shows headline figures"
    for topic, row in headline.items():
        assert topic in current, f"README row {topic!r} is not in results.md's Current figures"
        assert row == current[topic], f"README row {topic!r} differs from results.md"


def test_every_current_figure_has_a_date_a_commit_and_a_command() -> None:
    current = table_after(RESULTS, "## Current figures")
    current.pop("topic")
    for topic, (_, figure, dated, command) in current.items():
        assert figure, topic
        assert DATED.match(dated), f"{topic}: {dated!r} is not 'YYYY-MM-DD, commit'"
        assert command.startswith("`"), f"{topic}: no command"


def test_the_documents_stay_short() -> None:
    assert len(README.read_text().splitlines()) <= 250
    assert len(RESULTS.read_text().splitlines()) <= 400
