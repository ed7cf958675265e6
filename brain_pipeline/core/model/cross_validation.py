"""Cross-validation of the classifier: validation rows within a training fold, and the
figures of out-of-fold predictions. `benchmarks/cv.py` and `benchmarks/cv_variants.py` use
them, so a variant is scored exactly as the cross-validation is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brain_pipeline.core.classes import TARGET_CLASSES
from brain_pipeline.core.data.splits import group_position
from brain_pipeline.core.model import evaluation
from brain_pipeline.core.model.intervals import group_bootstrap_mean

VAL_FRACTION = 0.15  # of a training fold's groups, for early stopping
VAL_SALT = "cv-validation"


def validation_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose group falls in the validation share (by the hash of its group key)."""
    return frame["group_id"].map(lambda g: group_position(g, VAL_SALT) < VAL_FRACTION).to_numpy()


def held_out_scores(predictions: pd.DataFrame) -> dict:
    """The test figures of out-of-fold predictions (one fold's, or all folds' pooled)."""
    probabilities = predictions[[f"p_{c}" for c in TARGET_CLASSES]].to_numpy()
    truth = np.array([TARGET_CLASSES.index(c) for c in predictions["target_class"]])
    metrics = evaluation.held_out_metrics(predictions, truth, probabilities, TARGET_CLASSES)
    report = metrics["classification_report"]
    model_right = probabilities.argmax(axis=1) == truth
    probe_right = (predictions["probe_class"] == predictions["target_class"]).to_numpy()
    return {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["f1_macro"],
        **{f"f1_{c}": report[c]["f1-score"] for c in TARGET_CLASSES},
        "within_source": metrics["within_source_healthy_vs_alzheimer"]["accuracy"],
        "ece": metrics["expected_calibration_error"],
        "roc_auc_macro": metrics["roc_auc_macro"],
        "raw_probe_accuracy": float(probe_right.mean()),
        "margin_over_raw_probe": group_bootstrap_mean(
            predictions["group_id"], model_right.astype(float) - probe_right
        ),
        "n_test_groups": metrics["intervals"]["n_groups"],
        "intervals": metrics["intervals"]["metrics"],
        "per_source": metrics["per_dataset"],
        "healthy_vs_alzheimer_by_source": metrics["healthy_vs_alzheimer_by_dataset"],
    }
