"""`ModelInputs`: what every asset that reads one trained model starts from.

model_evaluation, gradcam_gallery, ood_guard and external_evaluation each read the model of
their partition, the preprocessing it was trained with, the split table and the cached input
tensors of some rows. They get them here, from the upstream artifacts their `ArtifactStep`
already found, so none of them repeats the lookups.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brain_pipeline.core import artifact_names
from brain_pipeline.core.data.sources import RawDataConfig
from brain_pipeline.core.data.splits import split_rows
from brain_pipeline.core.imaging.preprocessing import Preprocessing
from brain_pipeline.core.model.leaderboard import model_version_of
from brain_pipeline.core.model.tensors import load_model, tensors_for_rows
from brain_pipeline.defs.support import ArtifactStep, progress_log

TRAINED_MODEL = "trained_model"
DATASET_SPLITS = "dataset_splits"


class ModelInputs:
    """The trained model upstream of `step`, loaded on first use.

    ``inputs = ModelInputs(step)``; `inputs.model`, `inputs.preprocessing`, `inputs.version`,
    `inputs.rows("test")` (needs dataset_splits upstream) and `inputs.tensors(rows)` (cached
    tensors and class indices, in the rows' order).
    """

    def __init__(self, step: ArtifactStep) -> None:
        if TRAINED_MODEL not in step.upstream:
            raise ValueError(f"{step.name}: ModelInputs needs {TRAINED_MODEL!r} upstream")
        self._step = step
        self.model_file: Path = step.upstream[TRAINED_MODEL].path
        self.version: str = model_version_of(self.model_file.parent)

    @cached_property
    def _loaded(self) -> tuple[Any, Preprocessing]:
        return load_model(self.model_file)

    @property
    def model(self) -> Any:
        return self._loaded[0]

    @property
    def preprocessing(self) -> Preprocessing:
        return self._loaded[1]

    @cached_property
    def raw(self) -> RawDataConfig:
        return self._step.storage.raw_data()

    @cached_property
    def splits(self) -> pd.DataFrame:
        if DATASET_SPLITS not in self._step.upstream:
            raise ValueError(f"{self._step.name}: no {DATASET_SPLITS!r} upstream to read")
        return pd.read_parquet(self._step.upstream[DATASET_SPLITS].path)

    def rows(self, split: str) -> pd.DataFrame:
        """The rows of one split (train, val or test), numbered from 0."""
        return split_rows(self.splits, split)

    def tensors(self, rows: pd.DataFrame, log_progress: bool = True) -> tuple[np.ndarray, Any]:
        """The model's input tensors (memory-mapped from the shared cache) and class indices."""
        cache = self._step.storage.shared_dir(artifact_names.TENSOR_CACHE)
        progress = progress_log(self._step.context) if log_progress else None
        return tensors_for_rows(rows, self.raw.roots, self.preprocessing, cache, progress)
