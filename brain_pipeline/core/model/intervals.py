"""95% intervals for the headline test metrics by a bootstrap over near-duplicate groups.

Test images are not independent: the slices of one subject (one near-duplicate group) are
right or wrong together. Resampling images would treat 32 slices of one subject as 32
witnesses; resampling groups (a cluster bootstrap) treats them as one, which is what the
figure's spread across other subjects depends on. Each resample draws as many groups as the
test split has, with replacement, and recomputes the metrics from the summed per-group
confusion counts, so a thousand resamples cost milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brain_pipeline.core.classes import ALZHEIMER, HEALTHY

DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95


def _group_counts(
    groups: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    inside: np.ndarray,
    inside_correct: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: the flattened confusion counts, and the within-source (right, total)."""
    names, index = np.unique(groups, return_inverse=True)
    cells = y_true * n_classes + y_pred
    confusion = np.zeros((len(names), n_classes * n_classes))
    np.add.at(confusion, (index, cells), 1.0)
    within = np.zeros((len(names), 2))
    np.add.at(within, (index, 0), inside_correct.astype(float))
    np.add.at(within, (index, 1), inside.astype(float))
    return confusion, within, names


def _metrics(confusion: np.ndarray, within: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1, per-class F1 and within-source accuracy of summed counts (rows:
    resamples). Macro-F1 averages the classes present in the resample's truth, so a resample
    that happens to lack a class is not scored 0 for it (on a test split holding every
    class this is scikit-learn's macro-F1)."""
    matrix = confusion.reshape(len(confusion), n_classes, n_classes)
    true_positive = np.einsum("rii->ri", matrix)
    predicted, actual = matrix.sum(axis=1), matrix.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(predicted + actual > 0, 2 * true_positive / (predicted + actual), 0.0)
        within_accuracy = within[:, 0] / within[:, 1]
    present = actual > 0  # as scikit-learn's macro average over the labels that occur
    return {
        "accuracy": true_positive.sum(axis=1) / matrix.sum(axis=(1, 2)),
        "f1_macro": (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1),
        **{f"f1_{c}": f1[:, c] for c in range(n_classes)},
        "within_source_healthy_vs_alzheimer": within_accuracy,
    }


def group_bootstrap_intervals(
    groups: Sequence[str],
    y_true: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    within_source: np.ndarray | None = None,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> dict:
    """Percentile intervals of accuracy, macro-F1, per-class F1 and (where `within_source`
    marks the Alzheimer source's rows) healthy vs Alzheimer within that source."""
    y_true, y_pred = np.asarray(y_true), np.asarray(probabilities).argmax(axis=1)
    n_classes = len(class_names)
    inside, inside_correct = _within_source(within_source, probabilities, y_true, class_names)
    confusion, within, names = _group_counts(
        np.asarray(groups), y_true, y_pred, n_classes, inside, inside_correct
    )
    draws = _draws(len(names), n_resamples, seed)
    estimate = _metrics(
        confusion.sum(axis=0, keepdims=True), within.sum(axis=0, keepdims=True), n_classes
    )
    resampled = _metrics(draws @ confusion, draws @ within, n_classes)
    intervals = {}
    for key, values in resampled.items():
        name = key if not key[3:].isdigit() else f"f1_{class_names[int(key[3:])]}"
        finite = values[np.isfinite(values)]
        point = float(estimate[key][0])
        if not np.isfinite(point) or finite.size == 0:
            continue
        intervals[name] = _interval(point, finite, level)
    return {
        "level": level,
        "n_resamples": n_resamples,
        "n_groups": len(names),
        "method": "percentile bootstrap over near-duplicate groups",
        "metrics": intervals,
    }


def _within_source(within_source, probabilities, y_true, class_names):
    """Rows of the Alzheimer source, and whether healthy vs Alzheimer was right on each."""
    if within_source is None:
        inside = np.zeros(len(y_true), dtype=bool)
    else:
        inside = np.asarray(within_source, dtype=bool)
    alzheimer, healthy = class_names.index(ALZHEIMER), class_names.index(HEALTHY)
    said_alzheimer = probabilities[:, alzheimer] > probabilities[:, healthy]
    correct = inside & ((y_true == alzheimer) == said_alzheimer)
    return inside, correct


def group_bootstrap_mean(
    groups: Sequence[str],
    values: np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> dict[str, float] | None:
    """The mean of per-image `values` with its percentile interval over groups (None when
    empty): a share of right answers (values 0/1), or a paired difference such as one
    model's right answers minus another's on the same images (values -1/0/1)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return None
    names, index = np.unique(np.asarray(groups), return_inverse=True)
    sums, counts = np.bincount(index, values, len(names)), np.bincount(index, None, len(names))
    draws = _draws(len(names), n_resamples, seed)
    return _interval(float(values.mean()), (draws @ sums) / (draws @ counts), level)


def _draws(n_groups: int, n_resamples: int, seed: int) -> np.ndarray:
    """How often each group is drawn in each resample (rows: resamples)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_resamples)


def _interval(estimate: float, resampled: np.ndarray, level: float) -> dict[str, float]:
    """The percentile interval of `resampled` at `level`, beside the point estimate."""
    if not 0.5 < level < 1.0:
        raise ValueError(f"interval level must be in (0.5, 1), got {level}")
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return {"estimate": estimate, "low": float(low), "high": float(high)}
