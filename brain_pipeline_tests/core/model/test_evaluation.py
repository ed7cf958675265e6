"""Metrics agree with scikit-learn and with hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from brain_pipeline.core.model.evaluation import (
    classification_metrics,
    expected_calibration_error,
    healthy_vs_alzheimer_by_dataset,
    metrics_by_group,
)

CLASSES = ("healthy_brain", "tumor_brain", "alzheimer_brain")


def _fixed_predictions():
    rng = np.random.default_rng(3)
    y_true = np.repeat([0, 1, 2], 20)
    logits = rng.normal(size=(60, 3)) + np.eye(3)[y_true] * 1.5
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y_true, probabilities


def test_metrics_match_scikit_learn() -> None:
    y_true, probabilities = _fixed_predictions()
    metrics = classification_metrics(y_true, probabilities, CLASSES)
    y_pred = probabilities.argmax(1)
    assert metrics["accuracy"] == pytest.approx((y_pred == y_true).mean())
    assert metrics["f1_macro"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert metrics["f1_weighted"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    expected_auc = roc_auc_score(y_true, probabilities, multi_class="ovr", average="macro")
    assert metrics["roc_auc_macro"] == pytest.approx(expected_auc)
    assert np.array(metrics["confusion_matrix"]).sum() == 60
    assert np.trace(metrics["confusion_matrix"]) == (y_pred == y_true).sum()


def test_calibration_error_of_a_perfectly_calibrated_toy() -> None:
    # Two bins: confidence 0.6 with 60% right, confidence 0.9 with 90% right -> ECE 0.
    probabilities = np.array([[0.6, 0.4]] * 10 + [[0.9, 0.1]] * 10)
    y_true = np.array([0] * 6 + [1] * 4 + [0] * 9 + [1])
    ece, bins = expected_calibration_error(y_true, probabilities)
    assert ece == pytest.approx(0.0, abs=1e-9)
    assert [b["count"] for b in bins] == [10, 10]
    overconfident = np.array([[0.95, 0.05]] * 10)
    assert expected_calibration_error(np.array([0] * 5 + [1] * 5), overconfident)[
        0
    ] == pytest.approx(0.45)


def test_per_group_metrics_and_input_validation() -> None:
    y_true, probabilities = _fixed_predictions()
    groups = ["a"] * 30 + ["b"] * 30
    per_group = metrics_by_group(y_true, probabilities, groups, CLASSES)
    assert per_group["a"]["n_images"] == 30
    inside = np.arange(30)
    assert per_group["a"]["accuracy"] == pytest.approx(
        (probabilities[inside].argmax(1) == y_true[inside]).mean()
    )
    with pytest.raises(ValueError, match="empty"):
        classification_metrics(np.array([]), np.zeros((0, 3)), CLASSES)
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(y_true, probabilities[:, :2], CLASSES)


def test_healthy_vs_alzheimer_within_each_source_per_slice_and_per_subject() -> None:
    test = pd.DataFrame(
        {
            "dataset": ["adni"] * 6 + ["tumours"] * 2 + ["only_healthy"],
            "target_class": ["alzheimer_brain"] * 3
            + ["healthy_brain"] * 3
            + ["tumor_brain", "healthy_brain", "healthy_brain"],
            "subjects": [["adni:a"]] * 3 + [["adni:b"]] * 2 + [[]] + [[]] * 3,
        }
    )
    # Subject a: two slices right (one barely wrong): right as a subject; b: one slice of two
    # wrong, by far: wrong as a subject; the unnamed healthy slice right.
    alzheimer_probability = np.array([0.9, 0.8, 0.45, 0.1, 0.95, 0.2, 0.1, 0.1, 0.1])
    probabilities = np.stack(
        [1 - alzheimer_probability - 0.01, np.full(9, 0.01), alzheimer_probability], axis=1
    )
    result = healthy_vs_alzheimer_by_dataset(test, probabilities, CLASSES)
    assert set(result) == {"adni"}  # the others lack one of the two classes
    assert result["adni"]["n_images"] == 6 and result["adni"]["accuracy"] == pytest.approx(4 / 6)
    assert result["adni"]["n_subjects"] == 2 and result["adni"]["subject_accuracy"] == 0.5
