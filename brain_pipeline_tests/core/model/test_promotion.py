"""Champion / challenger decisions and the append-only promotion history."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pandas as pd
import pytest

from brain_pipeline.core.model.promotion import (
    Comparison,
    PromotionHistory,
    PromotionRecord,
    compare_on_common_images,
    decide,
)

CLASSES = ["healthy_brain", "tumor_brain", "alzheimer_brain"]


def predictions(rows: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """sha256 -> (target, predicted)."""
    return pd.DataFrame(
        [{"sha256": k, "target_class": t, "predicted_class": p} for k, (t, p) in rows.items()],
        columns=["sha256", "target_class", "predicted_class"],
    )


def test_both_models_are_scored_on_the_images_in_both_test_splits_only() -> None:
    champion = predictions(
        {
            "a": ("healthy_brain", "healthy_brain"),
            "b": ("tumor_brain", "tumor_brain"),
            "c": ("alzheimer_brain", "alzheimer_brain"),
            "only_champion": ("tumor_brain", "healthy_brain"),
        }
    )
    challenger = predictions(
        {
            "a": ("healthy_brain", "healthy_brain"),
            "b": ("tumor_brain", "healthy_brain"),
            "c": ("alzheimer_brain", "alzheimer_brain"),
            "only_challenger": ("tumor_brain", "tumor_brain"),
        }
    )
    comparison = compare_on_common_images(champion, challenger, CLASSES)
    assert comparison.comparison_images == 3
    assert comparison.champion_macro_f1 == pytest.approx(1.0)
    # healthy: P 1/2 R 1 -> 2/3; tumour: 0; Alzheimer: 1.
    assert comparison.challenger_macro_f1 == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert compare_on_common_images(champion, predictions({}), CLASSES).comparison_images == 0


@pytest.mark.parametrize(
    ("champion", "challenger", "failed", "decision", "reason"),
    [
        (0.80, 0.795, [], "promoted", "not lower by more than the margin 0.01"),
        (0.80, 0.85, [], "promoted", "+0.0500"),
        (0.80, 0.78, [], "kept", "lower by more than the margin 0.01"),
        (0.80, 0.90, ["dataset_splits:no_split_leakage"], "kept", "no_split_leakage"),
    ],
)
def test_the_margin_and_blocking_checks_decide(champion, challenger, failed, decision, reason):
    result = decide(
        Comparison(40, champion, challenger), margin=0.01, failed_blocking_checks=failed
    )
    assert result.decision == decision and reason in result.reason


def test_models_without_common_images_are_not_compared() -> None:
    result = decide(Comparison(0, None, None))
    assert result.decision == "kept" and "cannot be compared" in result.reason


def record(challenger: str, champion: str | None, decision: str, kind="automatic"):
    return PromotionRecord(champion, challenger, decision, "because", kind)


def test_the_history_is_appended_and_knows_champion_and_retired(tmp_path: Path) -> None:
    history = PromotionHistory(tmp_path)
    assert history.champion() is None and history.statuses() == {}
    history.append(record("a@1", None, "promoted"))
    history.append(record("b@1", "a@1", "kept"))
    history.append(record("c@1", "a@1", "promoted", kind="override"))
    history.append(record("a@1", "c@1", "promoted", kind="manual"))  # a rollback
    assert history.champion()["serving_version"] == "a@1"
    assert history.statuses() == {"a@1": "champion", "c@1": "retired"}
    assert history.promotion_of("c@1")["kind"] == "override"
    assert [r["kind"] for r in history.records()] == ["automatic"] * 2 + ["override", "manual"]
    first = history.path.read_text().splitlines()[0]
    history.append(record("d@1", "a@1", "kept"))
    assert history.path.read_text().splitlines()[0] == first  # nothing is rewritten


def test_a_refused_first_candidate_leaves_no_champion(tmp_path: Path) -> None:
    history = PromotionHistory(tmp_path)
    history.append(record("a@1", None, "kept"))  # e.g. its splits leaked
    assert history.champion() is None and history.statuses() == {}
    history.append(record("b@1", None, "promoted"))
    assert history.champion()["serving_version"] == "b@1"


def test_a_torn_line_is_reported_with_its_number(tmp_path: Path) -> None:
    history = PromotionHistory(tmp_path)
    history.append(record("a@1", None, "promoted"))
    with history.path.open("a") as handle:
        handle.write('{"challenger_version": "b@')
    with pytest.raises(ValueError, match="promotions.jsonl, line 2"):
        history.records()


def _promote_many(folder: str, worker: int, count: int) -> None:
    history = PromotionHistory(Path(folder))
    for i in range(count):
        history.append(record(f"w{worker}@{i}", None, "promoted", kind="manual"))


def test_concurrent_promotions_do_not_corrupt_the_history(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_promote_many, args=(str(tmp_path), w, 50)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    lines = (tmp_path / "promotions.jsonl").read_text().splitlines()
    assert len(lines) == 200
    versions = [json.loads(line)["challenger_version"] for line in lines]
    assert sorted(versions) == sorted(f"w{w}@{i}" for w in range(4) for i in range(50))
    for w in range(4):  # each writer's lines in its own order
        mine = [v for v in versions if v.startswith(f"w{w}@")]
        assert mine == [f"w{w}@{i}" for i in range(50)]
