"""Classification metrics on a held-out split, computed with scikit-learn."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)

from brain_pipeline.core.classes import ALZHEIMER, HEALTHY
from brain_pipeline.core.data.sources import ALZHEIMER_SOURCE_LABELS
from brain_pipeline.core.model.intervals import group_bootstrap_intervals


def expected_calibration_error(
    y_true: np.ndarray, probabilities: np.ndarray, n_bins: int = 10
) -> tuple[float, list[dict]]:
    """ECE of the top-class confidence, and the per-bin table for a reliability diagram."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins, ece = [], 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > low) & (confidence <= high)
        if not inside.any():
            continue
        accuracy, mean_confidence = float(correct[inside].mean()), float(confidence[inside].mean())
        ece += inside.mean() * abs(accuracy - mean_confidence)
        bins.append(
            {
                "low": float(low),
                "high": float(high),
                "count": int(inside.sum()),
                "accuracy": accuracy,
                "confidence": mean_confidence,
            }
        )
    return float(ece), bins


def one_vs_rest_roc(
    y_true: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> tuple[dict[str, float | None], dict[str, dict[str, list[float]]]]:
    """Per-class ROC-AUC and curve points; None for a class absent from (or filling) y_true."""
    aucs: dict[str, float | None] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    for index, name in enumerate(class_names):
        positives = y_true == index
        if positives.all() or not positives.any():
            aucs[name] = None
            continue
        aucs[name] = float(roc_auc_score(positives, probabilities[:, index]))
        fpr, tpr, _ = roc_curve(positives, probabilities[:, index])
        curves[name] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    return aucs, curves


def classification_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Accuracy, F1 (macro and weighted), per-class report, confusion matrix, ROC-AUC, ECE."""
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        raise ValueError("cannot evaluate on an empty split; the test split has no images")
    if probabilities.shape != (len(y_true), len(class_names)):
        raise ValueError(
            f"probabilities have shape {probabilities.shape}; expected "
            f"({len(y_true)}, {len(class_names)})"
        )
    labels = list(range(len(class_names)))
    y_pred = probabilities.argmax(axis=1)
    aucs, curves = one_vs_rest_roc(y_true, probabilities, class_names)
    known_aucs = [v for v in aucs.values() if v is not None]
    ece, reliability = expected_calibration_error(y_true, probabilities)
    return {
        "n_images": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "f1_weighted": float(
            f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
        ),
        "roc_auc_ovr": aucs,
        "roc_auc_macro": float(np.mean(known_aucs)) if known_aucs else None,
        "roc_curves": curves,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classification_report": classification_report(
            y_true,
            y_pred,
            labels=labels,
            target_names=list(class_names),
            output_dict=True,
            zero_division=0,
        ),
        "expected_calibration_error": ece,
        "reliability_bins": reliability,
    }


def metrics_by_group(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    groups: Sequence[str],
    class_names: Sequence[str],
) -> dict[str, dict]:
    """Accuracy and macro-F1 within each group (e.g. each source dataset)."""
    groups = np.asarray(groups)
    y_pred = probabilities.argmax(axis=1)
    result = {}
    for group in sorted(set(groups.tolist())):
        inside = groups == group
        # Only classes that occur in this group count, or absent classes would score 0.
        labels = sorted(set(y_true[inside].tolist()) | set(y_pred[inside].tolist()))
        result[group] = {
            "n_images": int(inside.sum()),
            "accuracy": float(accuracy_score(y_true[inside], y_pred[inside])),
            "f1_macro": float(
                f1_score(
                    y_true[inside], y_pred[inside], labels=labels, average="macro", zero_division=0
                )
            ),
        }
    return result


def within_source_healthy_vs_alzheimer(
    source_labels: Sequence[str],
    target_classes: Sequence[str],
    probabilities: np.ndarray,
    class_names: Sequence[str],
) -> dict:
    """Healthy vs Alzheimer among images from the Alzheimer source only (one style).

    Those images (NonDemented and the three demented grades) share scanner, size and
    skull-stripping, so no source cue helps: this is the clinically hard part of the task.
    The decision is between the two classes possible within that source.
    """
    inside = np.isin(np.asarray(source_labels), list(ALZHEIMER_SOURCE_LABELS))
    if not inside.any():
        return {"n_images": 0, "accuracy": None}
    truth = np.asarray(target_classes)[inside] == ALZHEIMER
    alzheimer, healthy = class_names.index(ALZHEIMER), class_names.index(HEALTHY)
    said_alzheimer = probabilities[inside, alzheimer] > probabilities[inside, healthy]
    return {"n_images": int(inside.sum()), "accuracy": float((truth == said_alzheimer).mean())}


def healthy_vs_alzheimer_by_dataset(
    test: pd.DataFrame, probabilities: np.ndarray, class_names: Sequence[str]
) -> dict[str, dict]:
    """Healthy vs Alzheimer within each dataset that holds both (one source, no source cue):
    per slice, and per subject where the file names give subjects (a subject's answer is the
    mean over its slices of P(Alzheimer) - P(healthy))."""
    alzheimer, healthy = class_names.index(ALZHEIMER), class_names.index(HEALTHY)
    margin = probabilities[:, alzheimer] - probabilities[:, healthy]
    targets = test["target_class"].to_numpy()
    subjects = (
        [names[0] if len(names) else None for names in test["subjects"]]
        if "subjects" in test
        else [None] * len(test)
    )
    frame = pd.DataFrame(
        {"dataset": test["dataset"].to_numpy(), "truth": targets == ALZHEIMER, "margin": margin}
    ).assign(subject=subjects)[np.isin(targets, [HEALTHY, ALZHEIMER])]
    result = {}
    for dataset, rows in frame.groupby("dataset"):
        if rows["truth"].nunique() < 2:
            continue  # one of the two classes only: no within-source question
        named = rows.dropna(subset=["subject"]).groupby("subject")
        per_subject = named.agg(truth=("truth", "first"), margin=("margin", "mean"))
        result[str(dataset)] = {
            "n_images": int(len(rows)),
            "accuracy": float(((rows["margin"] > 0) == rows["truth"]).mean()),
            "n_subjects": int(len(per_subject)),
            "subject_accuracy": float(((per_subject["margin"] > 0) == per_subject["truth"]).mean())
            if len(per_subject)
            else None,
        }
    return result


def held_out_metrics(
    test: pd.DataFrame,
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
) -> dict:
    """Everything model_evaluation reports on the test rows: overall, per source dataset,
    healthy vs Alzheimer within the Alzheimer source (where no source cue helps), and 95%
    intervals of the headline figures from a bootstrap over near-duplicate groups."""
    metrics = classification_metrics(labels, probabilities, class_names)
    metrics["per_dataset"] = metrics_by_group(
        labels, probabilities, list(test["dataset"]), class_names
    )
    metrics["within_source_healthy_vs_alzheimer"] = within_source_healthy_vs_alzheimer(
        test["source_label"], test["target_class"], probabilities, class_names
    )
    metrics["healthy_vs_alzheimer_by_dataset"] = healthy_vs_alzheimer_by_dataset(
        test, probabilities, class_names
    )
    groups = test["group_id"] if "group_id" in test else test["sha256"]
    metrics["intervals"] = group_bootstrap_intervals(
        list(groups),
        labels,
        probabilities,
        list(class_names),
        np.isin(np.asarray(test["source_label"]), list(ALZHEIMER_SOURCE_LABELS)),
    )
    return metrics


def predictions_table(
    test: pd.DataFrame, probabilities: np.ndarray, class_names: Sequence[str]
) -> pd.DataFrame:
    """One row per test image: its identity, the predicted class and each probability."""
    predictions = test[["sha256", "dataset", "path", "target_class", "group_id"]].copy()
    predictions["predicted_class"] = [class_names[i] for i in probabilities.argmax(1)]
    for position, name in enumerate(class_names):
        predictions[f"p_{name}"] = probabilities[:, position]
    return predictions
