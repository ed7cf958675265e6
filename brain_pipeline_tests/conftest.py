"""Shared fixtures: a tiny generated raw-data root, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from brain_pipeline.core.phantoms import synthesize_datasets


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three synthetic datasets in Kaggle layouts, 12 images per source label, small images."""
    root = tmp_path_factory.mktemp("raw")
    synthesize_datasets(root, seed=3, images_per_label=12, image_scale=0.3)
    return root
