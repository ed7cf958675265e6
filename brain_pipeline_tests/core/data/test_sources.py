from __future__ import annotations

from pathlib import Path

import pytest

from brain_pipeline.core.data.sources import (
    DEFAULT_CLASS_MAP,
    DatasetConfigError,
    dataset_fingerprint,
    load_raw_data_config,
    source_label,
)


def test_label_comes_from_the_deepest_known_folder() -> None:
    assert (
        source_label("Brain Tumor Data Set/Brain Tumor/x.jpg", DEFAULT_CLASS_MAP) == "Brain Tumor"
    )
    assert source_label("Image-dataset/train/NonDemented/a.jpg", DEFAULT_CLASS_MAP) == "NonDemented"
    assert source_label("YES/a.jpg", DEFAULT_CLASS_MAP) == "yes"
    assert source_label("misc/a.jpg", DEFAULT_CLASS_MAP) is None


def test_discovery_without_config_skips_private_folders(tmp_path: Path) -> None:
    (tmp_path / "Kaggle Set-1" / "yes").mkdir(parents=True)
    (tmp_path / "_lesion_masks").mkdir()
    (tmp_path / ".cache").mkdir()
    config = load_raw_data_config(tmp_path)
    assert [spec.name for spec in config.datasets] == ["kaggle_set_1"]
    assert config.lesion_masks_dir == tmp_path / "_lesion_masks"


def test_config_overrides_mapping_and_reports_errors(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "datasets.toml").write_text(
        '[datasets.first]\npath = "a"\n[class_map]\nweird = "tumor_brain"\n'
    )
    config = load_raw_data_config(tmp_path)
    assert config.datasets[0].class_map["weird"] == "tumor_brain"
    (tmp_path / "datasets.toml").write_text('[datasets.first]\npath = "missing"\n')
    with pytest.raises(DatasetConfigError, match="missing"):
        load_raw_data_config(tmp_path)
    (tmp_path / "datasets.toml").write_text(
        '[datasets.first]\npath = "a"\n[class_map]\nx = "cat"\n'
    )
    with pytest.raises(DatasetConfigError, match="'cat'"):
        load_raw_data_config(tmp_path)
    with pytest.raises(DatasetConfigError, match="does not exist"):
        load_raw_data_config(tmp_path / "nope")


def test_fingerprint_changes_when_a_file_is_added(tmp_path: Path) -> None:
    (tmp_path / "yes").mkdir()
    (tmp_path / "yes" / "a.jpg").write_bytes(b"x")
    before = dataset_fingerprint(tmp_path)
    assert dataset_fingerprint(tmp_path) == before
    (tmp_path / "yes" / "b.jpg").write_bytes(b"y")
    assert dataset_fingerprint(tmp_path) != before
