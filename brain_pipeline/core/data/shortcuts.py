"""The shortcut audit: how well do trivial image statistics predict the class?

If the size, colour channels, file format or overall brightness of an image give its class
away, a CNN can score well while learning nothing about disease. A gradient-boosting probe on
those statistics, cross-validated by near-duplicate group (so a subject never sits on both
sides), says how much of the task is solvable that way: on the raw files, and on the tensors
the model actually sees after preprocessing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits

from brain_pipeline.core.data.manifest import THUMBNAIL_SIDE
from brain_pipeline.core.data.splits import SPLITS

RAW_FEATURES = ("width", "height", "channels", "format", "mean_intensity", "std_intensity")
TENSOR_FEATURES = ("mean_intensity", "std_intensity", "foreground_fraction")
# A single feature this far above chance is named as a leak.
LEAK_MARGIN = 0.15

_CHANNELS = {"1": 1, "L": 1, "P": 1, "I": 1, "I;16": 1, "F": 1, "LA": 2, "RGB": 3, "RGBA": 4}


@dataclass
class ProbeResult:
    accuracy: float
    chance: float
    n_images: int
    per_feature_accuracy: dict[str, float] = field(default_factory=dict)

    @property
    def leaking_features(self) -> list[str]:
        return sorted(
            name
            for name, accuracy in self.per_feature_accuracy.items()
            if accuracy >= self.chance + LEAK_MARGIN
        )

    def as_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "chance": self.chance,
            "n_images": self.n_images,
            "per_feature_accuracy": self.per_feature_accuracy,
            "leaking_features": self.leaking_features,
        }


def raw_file_statistics(rows: pd.DataFrame) -> pd.DataFrame:
    """The trivial statistics of raw files, from manifest columns (no image decoding).

    Mean and standard deviation of intensity come from the manifest's 32x32 grayscale
    thumbnail, which is close enough for a probe and already computed.
    """
    thumbnails = np.frombuffer(b"".join(rows["thumbnail"]), dtype=np.uint8)
    thumbnails = thumbnails.reshape(len(rows), THUMBNAIL_SIDE * THUMBNAIL_SIDE) / 255.0
    return pd.DataFrame(
        {
            "width": rows["width"].astype(float).to_numpy(),
            "height": rows["height"].astype(float).to_numpy(),
            "channels": rows["mode"].map(_CHANNELS).fillna(0).astype(float).to_numpy(),
            "format": pd.Categorical(rows["format"].fillna("")).codes.astype(float),
            "mean_intensity": thumbnails.mean(axis=1),
            "std_intensity": thumbnails.std(axis=1),
        }
    )


def tensor_statistics(tensors: np.ndarray, batch: int = 256) -> pd.DataFrame:
    """The same kind of statistics on model inputs (size and channels are constant there)."""
    rows = []
    for start in range(0, len(tensors), batch):
        chunk = np.asarray(tensors[start : start + batch], dtype=np.float32)
        flat = chunk.reshape(len(chunk), -1)
        rows.append(
            np.stack([flat.mean(axis=1), flat.std(axis=1), (flat > 0.02).mean(axis=1)], axis=1)
        )
    values = np.concatenate(rows) if rows else np.zeros((0, 3))
    return pd.DataFrame(values, columns=list(TENSOR_FEATURES))


def _probe(seed: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=100, random_state=seed)


def probe_accuracy(
    features: pd.DataFrame,
    labels: Sequence[str],
    groups: Sequence[str],
    *,
    n_splits: int = 5,
    seed: int = 0,
) -> ProbeResult:
    """Group-cross-validated accuracy of the probe on all features, and on each alone."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    folds = min(n_splits, len(np.unique(groups)))
    if folds < 2:
        raise ValueError("the shortcut probe needs at least two near-duplicate groups")
    chance = float(pd.Series(labels).value_counts(normalize=True).max())

    def cross_validated(columns: list[str]) -> float:
        correct = 0
        for train, test in GroupKFold(n_splits=folds).split(features, labels, groups):
            model = _probe(seed).fit(features.iloc[train][columns], labels[train])
            correct += int((model.predict(features.iloc[test][columns]) == labels[test]).sum())
        return correct / len(labels)

    # One OpenMP thread: the probe is small, and OpenMP threads spinning against another busy
    # process (a second run, a training step) slow it down a hundredfold.
    with threadpool_limits(limits=1, user_api="openmp"):
        return ProbeResult(
            accuracy=cross_validated(list(features.columns)),
            chance=chance,
            n_images=len(labels),
            per_feature_accuracy={name: cross_validated([name]) for name in features.columns},
        )


def held_out_probe_accuracy(
    train_features: pd.DataFrame,
    train_labels: Sequence[str],
    test_features: pd.DataFrame,
    test_labels: Sequence[str],
    seed: int = 0,
) -> float:
    """The probe trained on the train split and scored on the test split: the model's bar."""
    predicted = held_out_probe_predictions(train_features, train_labels, test_features, seed)
    return float((predicted == np.asarray(test_labels)).mean())


def held_out_probe_predictions(
    train_features: pd.DataFrame,
    train_labels: Sequence[str],
    test_features: pd.DataFrame,
    seed: int = 0,
) -> np.ndarray:
    """The probe's class for each test row, trained on the train rows (for paired margins)."""
    with threadpool_limits(limits=1, user_api="openmp"):
        model = _probe(seed).fit(train_features, np.asarray(train_labels))
        return model.predict(test_features)


def audit_splits(
    rows: pd.DataFrame,
    tensors_of: Callable[[pd.DataFrame], np.ndarray],
    model_test_accuracy: float,
) -> dict:
    """Trivial-statistics probes on the raw files and on the model inputs, and the model's
    margin over each on the test split.

    `rows` is the split table joined with each content's thumbnail; `tensors_of(part)` gives
    the model-ready tensors of some of its rows (read from the tensor cache).
    """
    raw_features = raw_file_statistics(rows)
    tensor_parts = []
    for name in SPLITS:
        part = rows[rows["split"] == name]
        tensor_parts.append(tensor_statistics(tensors_of(part)).set_index(part.index))
    tensor_features = pd.concat(tensor_parts).loc[rows.index]
    labels, groups = rows["target_class"].to_numpy(), rows["group_id"].to_numpy()
    train, test = (rows["split"] == "train").to_numpy(), (rows["split"] == "test").to_numpy()
    raw_test = held_out_probe_accuracy(
        raw_features[train], labels[train], raw_features[test], labels[test]
    )
    tensor_test = held_out_probe_accuracy(
        tensor_features[train], labels[train], tensor_features[test], labels[test]
    )
    return {
        "raw_files": probe_accuracy(raw_features, labels, groups).as_dict(),
        "model_inputs": probe_accuracy(tensor_features, labels, groups).as_dict(),
        "held_out": {
            "raw_file_probe_test_accuracy": raw_test,
            "tensor_probe_test_accuracy": tensor_test,
            "margin_over_raw_file_probe": model_test_accuracy - raw_test,
            "margin_over_tensor_probe": model_test_accuracy - tensor_test,
        },
    }
