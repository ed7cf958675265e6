"""Fitting the guard for a trained model on its own splits, and measuring it.

Train split: the Gaussian; validation split: the threshold; test split against generated
non-MRI images: the AUROC and the false-rejection rate that the docs report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from brain_pipeline.core.imaging.preprocessing import load_image
from brain_pipeline.core.serving.guard import (
    DEFAULT_QUANTILE,
    OODGuard,
    feature_vectors,
    image_statistics,
    measure,
)
from brain_pipeline.core.serving.non_mri import non_mri_images
from brain_pipeline.core.serving.predictor import Predictor

# The Gaussian needs a few thousand images at most; more only costs decoding time.
MAX_TRAIN_IMAGES = 4000


def split_features(
    predictor: Predictor,
    tensors: np.ndarray,
    files: Sequence[Path],
    progress: Callable[[int, int], None] | None = None,
    chunk: int = 256,
) -> np.ndarray:
    """Guard features of cached tensors and their raw files, in chunks (memory stays flat)."""
    parts = []
    for start in range(0, len(files), chunk):
        batch = np.asarray(tensors[start : start + chunk], dtype=np.float32)
        embeddings, _ = predictor.features_and_probabilities(batch)
        statistics = np.stack(
            [image_statistics(load_image(f)) for f in files[start : start + chunk]]
        )
        parts.append(feature_vectors(embeddings, statistics))
        if progress:
            progress(min(start + chunk, len(files)), len(files))
    return np.concatenate(parts)


def non_mri_features(predictor: Predictor, per_kind: int, seed: int) -> tuple[np.ndarray, list]:
    images = non_mri_images(per_kind=per_kind, seed=seed)
    prepared = [predictor.prepare(image) for _, image in images]
    embeddings, _ = predictor.features_and_probabilities(np.stack([p.tensor for p in prepared]))
    statistics = np.stack([p.statistics for p in prepared])
    return feature_vectors(embeddings, statistics), [kind for kind, _ in images]


def fit_and_measure(
    train: np.ndarray,
    validation: np.ndarray,
    test: np.ndarray,
    others: np.ndarray,
    kinds: list[str],
    quantile: float = DEFAULT_QUANTILE,
) -> tuple[OODGuard, dict]:
    guard = OODGuard.fit(train, validation, quantile=quantile)
    report = measure(guard, test, others, kinds)
    guard.summary.update(
        {key: value for key, value in report.items() if not key.endswith("_scores")}
    )
    return guard, report


def train_sample(n_rows: int, seed: int, limit: int = MAX_TRAIN_IMAGES) -> np.ndarray:
    """Row positions of the training split the guard is fitted on (all, up to `limit`)."""
    if n_rows <= limit:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=limit, replace=False))
