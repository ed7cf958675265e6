"""Model-ready tensors for rows of the split table, through the shared tensor cache."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from brain_pipeline.core.classes import TARGET_CLASSES
from brain_pipeline.core.data.sources import RawDataConfig
from brain_pipeline.core.data.splits import split_rows
from brain_pipeline.core.imaging.preprocessing import (
    Preprocessing,
    build_tensor_cache,
    class_indices,
    filesystem_path,
)


def tensors_for_rows(
    frame: pd.DataFrame,
    roots: Mapping[str, Path],
    preprocessing: Preprocessing,
    cache_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cached tensors (memory-mapped) and class indices of `frame`'s rows, in its order."""
    files = [
        filesystem_path(roots[d], p) for d, p in zip(frame["dataset"], frame["path"], strict=True)
    ]
    tensors = build_tensor_cache(
        files, list(frame["sha256"]), preprocessing, cache_dir, progress=progress
    )
    return tensors, class_indices(list(frame["target_class"]), TARGET_CLASSES)


def split_tensors(
    raw: RawDataConfig,
    table: pd.DataFrame,
    split: str,
    preprocessing: Preprocessing,
    cache_dir: Path,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Rows of one split, their cached tensors (memory-mapped) and class indices."""
    frame = split_rows(table, split)
    tensors, labels = tensors_for_rows(frame, raw.roots, preprocessing, cache_dir)
    return frame, tensors, labels


def load_model(model_path: Path):
    """A saved model and its preprocessing (`Preprocessing.for_model`): ``(model,
    preprocessing)``. Evaluation, explanation, the guard, external evaluation, `predict`,
    `serve` and `export` all load a model here, so a bare .keras file is read alike."""
    import keras

    model = keras.models.load_model(model_path)
    return model, Preprocessing.for_model(Path(model_path), int(model.input_shape[1]))


def trained_model_and_splits(model_path: Path, splits_path: Path):
    """A saved model, its preprocessing and the split table: ``(model, preprocessing,
    table)``; evaluation and explanation both start here."""
    model, preprocessing = load_model(model_path)
    return model, preprocessing, pd.read_parquet(splits_path)
