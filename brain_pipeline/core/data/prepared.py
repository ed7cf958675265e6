"""The data steps of the pipeline without Dagster: raw data -> manifest -> index -> splits.

The same core functions and default settings as the assets (manifest/<dataset>,
image_manifest, balanced_index, dataset_splits), for the benchmarks and experiments that
need the pipeline's splits of another raw-data root without running the pipeline.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from brain_pipeline.core.data import dedup, splits
from brain_pipeline.core.data.manifest import build_manifest
from brain_pipeline.core.data.sources import RawDataConfig, load_raw_data_config


def prepared_splits(data_dir: Path) -> tuple[RawDataConfig, pd.DataFrame]:
    """Manifest, balanced index and splits of `data_dir` with the pipeline's defaults."""
    raw = load_raw_data_config(data_dir)
    manifest, _ = build_manifest(raw.datasets)
    index = pipeline_index(manifest, raw.names("training"))
    return raw, splits.split_index(index, splits.SplitSettings())


def pipeline_index(manifest: pd.DataFrame, datasets: list[str], balance: bool = True):
    """The grouped index `balanced_index` builds of these datasets' manifest rows (the
    training datasets, in the pipeline), with its default settings (class-balanced unless
    `balance` is False)."""
    rows = manifest[manifest["dataset"].isin(datasets)]
    built = dedup.build_balanced_index(rows, dedup.IndexSettings(balance_classes=balance))
    return built.index.reset_index(drop=True)
