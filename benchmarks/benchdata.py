"""Shared by the benchmark scripts: raw data -> leakage-free splits -> cached tensors.

The same core functions and default settings as the pipeline's assets, without Dagster.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from brain_pipeline.core.data import dedup, splits
from brain_pipeline.core.data.manifest import build_manifest
from brain_pipeline.core.data.sources import RawDataConfig, load_raw_data_config
from brain_pipeline.core.imaging.preprocessing import Preprocessing
from brain_pipeline.core.model.tensors import tensors_for_rows


def prepared_splits(data_dir: Path) -> tuple[RawDataConfig, pd.DataFrame]:
    """Manifest, balanced index and splits of `data_dir` with the pipeline's defaults."""
    raw = load_raw_data_config(data_dir)
    manifest, _ = build_manifest(raw.datasets)
    index_settings = dedup.IndexSettings()
    index, _, _, _, *_ = dedup.build_balanced_index(
        manifest,
        seed=index_settings.seed,
        near_duplicate_cosine=index_settings.near_duplicate_cosine,
        resaved_similarity=index_settings.resaved_similarity,
    )
    return raw, splits.split_index(index, splits.SplitSettings())


def split_tensors(
    raw: RawDataConfig,
    table: pd.DataFrame,
    split: str,
    preprocessing: Preprocessing,
    cache_dir: Path,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Rows of one split, their cached tensors (memory-mapped) and class indices."""
    frame = splits.split_rows(table, split)
    tensors, labels = tensors_for_rows(frame, raw.roots, preprocessing, cache_dir)
    return frame, tensors, labels


def run_in_folder(folder: Path | None, work: Callable[[Path], dict], prefix: str) -> dict:
    """``work(folder)``, creating ``folder``; without one, in a temporary folder removed after."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        return work(folder)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        return work(Path(tmp))
