"""Intervals by a bootstrap over near-duplicate groups: right estimates, honest coverage."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from brain_pipeline.core.model.intervals import group_bootstrap_intervals, group_bootstrap_mean

CLASSES = ["healthy_brain", "tumor_brain", "alzheimer_brain"]


def _predictions(rng: np.random.Generator, n_groups: int, per_group: int, spread: float):
    """Groups whose images are right or wrong together: each group has its own accuracy."""
    truth = np.repeat(rng.integers(0, 3, n_groups), per_group)
    group_accuracy = np.repeat(np.clip(rng.normal(0.8, spread, n_groups), 0, 1), per_group)
    right = rng.random(len(truth)) < group_accuracy
    predicted = np.where(right, truth, (truth + rng.integers(1, 3, len(truth))) % 3)
    probabilities = np.full((len(truth), 3), 0.1)
    probabilities[np.arange(len(truth)), predicted] = 0.8
    groups = np.repeat([f"g{i}" for i in range(n_groups)], per_group)
    return groups, truth, probabilities


def test_estimates_are_the_ordinary_metrics() -> None:
    rng = np.random.default_rng(0)
    groups, truth, probabilities = _predictions(rng, 60, 5, 0.2)
    inside = rng.random(len(truth)) < 0.4
    result = group_bootstrap_intervals(groups, truth, probabilities, CLASSES, inside)
    metrics, predicted = result["metrics"], probabilities.argmax(1)
    assert metrics["accuracy"]["estimate"] == pytest.approx(accuracy_score(truth, predicted))
    assert metrics["f1_macro"]["estimate"] == pytest.approx(
        f1_score(truth, predicted, average="macro")
    )
    per_class = f1_score(truth, predicted, average=None)
    for position, name in enumerate(CLASSES):
        assert metrics[f"f1_{name}"]["estimate"] == pytest.approx(per_class[position])
    said_alzheimer = probabilities[inside, 2] > probabilities[inside, 0]
    within = np.mean((truth[inside] == 2) == said_alzheimer)
    assert metrics["within_source_healthy_vs_alzheimer"]["estimate"] == pytest.approx(within)
    for interval in metrics.values():
        assert interval["low"] <= interval["estimate"] <= interval["high"]
    assert result["n_groups"] == 60


def test_correlated_groups_widen_the_interval_and_keep_its_coverage() -> None:
    """Over repeated test splits, the 95% interval over groups covers the population's
    accuracy about 95% of the time; one over images (groups of one) does not."""
    rng = np.random.default_rng(1)
    truth_accuracy = _population_accuracy()
    covered = {"groups": 0, "images": 0}
    widths = {"groups": [], "images": []}
    for _ in range(150):
        groups, truth, probabilities = _predictions(rng, 40, 10, 0.25)
        images = np.arange(len(truth)).astype(str)
        for name, keys in (("groups", groups), ("images", images)):
            interval = group_bootstrap_intervals(
                keys, truth, probabilities, CLASSES, n_resamples=400, seed=7
            )["metrics"]["accuracy"]
            covered[name] += interval["low"] <= truth_accuracy <= interval["high"]
            widths[name].append(interval["high"] - interval["low"])
    assert covered["groups"] / 150 >= 0.88
    assert covered["images"] / 150 < covered["groups"] / 150 - 0.1
    assert np.mean(widths["groups"]) > 1.5 * np.mean(widths["images"])


def _population_accuracy() -> float:
    """E[clip(N(0.8, 0.25), 0, 1)]: the accuracy a test split of these groups estimates."""
    draws = np.random.default_rng(99).normal(0.8, 0.25, 2_000_000)
    return float(np.clip(draws, 0, 1).mean())


def test_no_alzheimer_source_rows_leave_that_interval_out_and_bad_levels_are_named() -> None:
    groups, truth, probabilities = _predictions(np.random.default_rng(2), 20, 3, 0.1)
    result = group_bootstrap_intervals(groups, truth, probabilities, CLASSES)
    assert "within_source_healthy_vs_alzheimer" not in result["metrics"]
    again = group_bootstrap_intervals(groups, truth, probabilities, CLASSES)
    assert again == result  # seeded
    with pytest.raises(ValueError, match="interval level"):
        group_bootstrap_intervals(groups, truth, probabilities, CLASSES, level=0.3)


def test_paired_difference_interval_is_over_groups() -> None:
    """The mean of a paired difference (one model right, the other wrong): its interval
    covers the estimate, is a single point when every group agrees, and is wider when the
    same images come in fewer, larger groups."""
    rng = np.random.default_rng(1)
    difference = rng.choice([-1.0, 0.0, 1.0], size=600, p=[0.2, 0.5, 0.3])
    many = group_bootstrap_mean([f"g{i}" for i in range(600)], difference)
    few = group_bootstrap_mean(np.repeat([f"g{i}" for i in range(20)], 30), np.sort(difference))
    assert many["estimate"] == pytest.approx(difference.mean())
    assert many["low"] < many["estimate"] < many["high"]
    assert few["high"] - few["low"] > 2 * (many["high"] - many["low"])
    same = group_bootstrap_mean(["a", "a", "b"], np.ones(3))
    assert (same["low"], same["high"]) == (1.0, 1.0)
    assert group_bootstrap_mean([], np.array([])) is None
    with pytest.raises(ValueError, match="interval level"):
        group_bootstrap_mean(["a", "b"], np.ones(2), level=1.5)
