"""Champion / challenger: which model version serves, and the record of every decision.

The challenger replaces the champion only if, on the images in both models' test splits, its
macro-F1 is not lower by more than a margin, and no blocking check of its lineage failed.
Every decision, automatic or by hand, is one line appended to a JSON-lines file under a file
lock; the champion is the `serving_version` of the last line. Nothing is ever rewritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock
from sklearn.metrics import f1_score

from brain_pipeline.core import artifact_names

DEFAULT_MARGIN = 0.01


@dataclass(frozen=True)
class Comparison:
    comparison_images: int
    champion_macro_f1: float | None
    challenger_macro_f1: float | None


def compare_on_common_images(
    champion: pd.DataFrame, challenger: pd.DataFrame, class_names: Sequence[str]
) -> Comparison:
    """Macro-F1 of both models on the images in both test splits (`predictions.parquet`
    tables: sha256, target_class, predicted_class). An image in either model's training data
    is in neither test split's intersection, so neither model is scored on what it saw."""
    common = champion.merge(challenger, on="sha256", suffixes=("_champion", "_challenger"))
    if common.empty:
        return Comparison(0, None, None)

    def macro_f1(side: str) -> float:
        return float(
            f1_score(
                common[f"target_class_{side}"],
                common[f"predicted_class_{side}"],
                labels=list(class_names),
                average="macro",
                zero_division=0,
            )
        )

    return Comparison(len(common), macro_f1("champion"), macro_f1("challenger"))


@dataclass(frozen=True)
class Decision:
    decision: str  # "promoted" or "kept"
    reason: str


def decide(
    comparison: Comparison,
    *,
    margin: float = DEFAULT_MARGIN,
    failed_blocking_checks: Sequence[str] = (),
) -> Decision:
    """Promote if the challenger is at most `margin` below the champion on the common
    images and no blocking check of its lineage failed."""
    if failed_blocking_checks:
        return Decision("kept", "blocking checks failed: " + ", ".join(failed_blocking_checks))
    if comparison.comparison_images == 0:
        return Decision(
            "kept", "no image is in both models' test splits, so they cannot be compared"
        )
    difference = comparison.challenger_macro_f1 - comparison.champion_macro_f1
    verdict = f"macro-F1 {difference:+.4f} on {comparison.comparison_images} common test images"
    if difference < -margin:
        return Decision("kept", f"{verdict}: lower by more than the margin {margin}")
    return Decision("promoted", f"{verdict}: not lower by more than the margin {margin}")


@dataclass(frozen=True)
class PromotionRecord:
    """One line of the promotion history."""

    champion_version: str | None  # serving before this decision
    challenger_version: str
    decision: str  # "promoted" or "kept"
    reason: str
    kind: str  # "automatic", "override" (force: true) or "manual" (models promote)
    champion_macro_f1: float | None = None
    challenger_macro_f1: float | None = None
    comparison_images: int = 0
    model_path: str = ""  # of the version serving after this decision
    evaluation_path: str = ""
    run_id: str | None = None
    decided_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def serving_version(self) -> str | None:
        return self.challenger_version if self.decision == "promoted" else self.champion_version


class PromotionHistory:
    """The append-only history in `folder/promotions.jsonl`, guarded by `promotions.lock`."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / artifact_names.PROMOTIONS
        self._lock = FileLock(str(self.path.with_suffix(".lock")), timeout=60)

    def locked(self) -> FileLock:
        """Hold the lock across read, decide and append, so that two decisions made at once
        are made one after the other (the lock is re-entrant in one process)."""
        return self._lock

    def append(self, record: PromotionRecord) -> dict[str, Any]:
        """Append one decision; returns the line written (with `serving_version`)."""
        line = {**asdict(record), "serving_version": record.serving_version}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.path.open("a") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return line

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        with self._lock:
            text = self.path.read_text()
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.path}, line {number}: not a JSON record: {exc}") from exc
        return records

    def champion(self) -> dict[str, Any] | None:
        """The last decision (whose `serving_version` is the champion), or None while no
        version serves (before any decision, or after a first candidate was refused)."""
        records = self.records()
        return records[-1] if records and records[-1]["serving_version"] else None

    def promotion_of(self, version: str) -> dict[str, Any] | None:
        """The last decision that made `version` the champion."""
        promoted = [
            r
            for r in self.records()
            if r["decision"] == "promoted" and r["challenger_version"] == version
        ]
        return promoted[-1] if promoted else None

    def statuses(self) -> dict[str, str]:
        """`champion` for the serving version, `retired` for every earlier one."""
        records = self.records()
        served = [r["serving_version"] for r in records if r["serving_version"]]
        current = records[-1]["serving_version"] if records else None
        status = {version: "retired" for version in served}
        if current:
            status[current] = "champion"
        return status
