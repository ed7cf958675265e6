"""One reader of a model's preprocessing: a bare .keras file (no record beside it) is read
alike by evaluation, the gallery, the guard, external evaluation, predict, serve and export."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from brain_pipeline.core.imaging.preprocessing import Preprocessing
from brain_pipeline.core.model.architectures import build_model
from brain_pipeline.core.model.tensors import trained_model_and_splits
from brain_pipeline.core.model.training import TrainingConfig
from brain_pipeline.core.serving.source import ModelSource

PACKAGE = Path(__file__).resolve().parents[3] / "brain_pipeline"


def test_a_bare_model_file_gets_the_training_defaults_on_every_path(tmp_path: Path) -> None:
    model_path = tmp_path / "model.keras"
    build_model("compact_cnn", image_size=48, n_classes=3).save(model_path)
    splits = tmp_path / "splits.parquet"
    pd.DataFrame({"sha256": ["a"], "split": ["test"]}).to_parquet(splits)
    expected = TrainingConfig(image_size=48).preprocessing
    assert expected == Preprocessing(48, skull_strip=True, intensity="equalise")

    # model_evaluation, gradcam_gallery and ood_guard start from trained_model_and_splits.
    assert trained_model_and_splits(model_path, splits)[1] == expected
    # predict, explain, serve and export load through ModelSource.
    source = ModelSource(tmp_path / "no_artifacts", model_path)
    assert source.load(source.choose()).preprocessing == expected


def test_models_are_loaded_and_their_preprocessing_read_in_one_place() -> None:
    """external_evaluation (and any new path) cannot read a model another way: keras's
    load_model and Preprocessing.for_model are called in the loader module only."""
    readers = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if {"keras.models.load_model(", ".for_model("} & set(_calls(path.read_text()))
    }
    assert readers == {"core/model/tensors.py"}


def _calls(text: str) -> list[str]:
    return [call for call in ("keras.models.load_model(", ".for_model(") if call in text]
