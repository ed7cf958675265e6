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
from brain_pipeline.core.data.subjects import subject_of


def test_label_comes_from_the_deepest_known_folder() -> None:
    assert (
        source_label("Brain Tumor Data Set/Brain Tumor/x.jpg", DEFAULT_CLASS_MAP) == "Brain Tumor"
    )
    assert source_label("Image-dataset/train/NonDemented/a.jpg", DEFAULT_CLASS_MAP) == "NonDemented"
    assert source_label("YES/a.jpg", DEFAULT_CLASS_MAP) == "yes"
    assert source_label("misc/a.jpg", DEFAULT_CLASS_MAP) is None


def test_discovery_without_config_skips_private_folders(tmp_path: Path) -> None:
    (tmp_path / "Kaggle Set-1" / "yes").mkdir(parents=True)
    (tmp_path / "other" / "no").mkdir(parents=True)
    (tmp_path / "_lesion_masks" / "Kaggle Set-1").mkdir(parents=True)
    (tmp_path / ".cache").mkdir()
    config = load_raw_data_config(tmp_path)
    assert [spec.name for spec in config.datasets] == ["kaggle_set_1", "other"]
    # A mirror folder under _lesion_masks/ for a dataset; masks beside the images otherwise.
    assert config.mask_roots == {
        "kaggle_set_1": tmp_path / "_lesion_masks" / "Kaggle Set-1",
        "other": tmp_path / "other",
    }


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


def test_a_dataset_table_may_carry_its_own_class_map(tmp_path: Path) -> None:
    for folder in ("cohort/dementia", "other/dementia"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "datasets.toml").write_text(
        '[class_map]\nweird = "tumor_brain"\n'
        '[datasets.cohort]\npath = "cohort"\n'
        '[datasets.cohort.class_map]\ndementia = "alzheimer_brain"\nweird = ""\n'
        '[datasets.other]\npath = "other"\n'
    )
    cohort, other = load_raw_data_config(tmp_path).datasets
    assert cohort.class_map["dementia"] == "alzheimer_brain"
    assert cohort.class_map["weird"] == ""  # the dataset's own entry wins over the top level
    assert cohort.class_map["yes"] == "tumor_brain"  # the built-in map stays underneath
    assert "dementia" not in other.class_map and other.class_map["weird"] == "tumor_brain"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[class-map]\nAD = "alzheimer_brain"\n[datasets.a]\n',
            r"unknown key 'class-map' at the top level \(did you mean 'class_map'\?\)",
        ),
        (
            '[datasets.a]\n[datasets.a.class-map]\nAD = "alzheimer_brain"\n',
            r"unknown key 'class-map' in \[datasets.a\] \(did you mean 'class_map'\?\)",
        ),
        (
            'role = "external"\n[datasets.a]\n',
            r"unknown key 'role' at the top level \(it belongs in a \[datasets.NAME\] table\)",
        ),
        (
            'lesion_masks = "masks"\n[datasets.a]\n',
            r"unknown key 'lesion_masks' at the top level \(it belongs in a \[datasets.NAME\]",
        ),
        (
            '[datasets.a]\nlesion_masks = "masks"\n',
            r"\[datasets.a\] lesion_masks must be \{suffix = \"_mask\"\} .* got 'masks'",
        ),
        (
            '[datasets.a]\nlesion_masks = {suffix = "_seg", folder = "m"}\n',
            r"\[datasets.a\] lesion_masks must be",
        ),
        ('[datasets.a]\nlesion_masks = {suffix = ""}\n', r"suffix must be a non-empty string"),
        (
            '[datasets.a]\nlesion_masks = {folder = "nowhere"}\n',
            r"\[datasets.a\] lesion_masks: folder .*nowhere does not exist",
        ),
        ('[datasets.a]\nfolder = "a"\n', r"unknown key 'folder' in \[datasets.a\]\. Keys in"),
        ("[datasets.a]\npath = 3\n", r"\[datasets.a\] path must be a string, got 3"),
        ('class_map = "AD"\n[datasets.a]\n', r"class_map must be a table"),
        ('[datasets.a]\n[datasets.a.class_map]\nAD = "cat"\n', r"datasets.a.class_map maps 'AD'"),
    ],
)
def test_unknown_misplaced_or_mistyped_keys_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "datasets.toml").write_text(text)
    with pytest.raises(DatasetConfigError, match=message) as raised:
        load_raw_data_config(tmp_path)
    assert str(tmp_path / "datasets.toml") in str(raised.value)  # the file is named


def test_a_dataset_may_name_its_subject_pattern_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cohort" / "no").mkdir(parents=True)
    config = tmp_path / "datasets.toml"
    config.write_text('[datasets.cohort]\ngroup_pattern = "^no/(?P<subject>p\\\\d+)_"\n')
    (cohort,) = load_raw_data_config(tmp_path).datasets
    assert subject_of("no/p12_3.jpg", cohort.group_pattern) == "p12"
    for bad, message in (
        ('"^no/(p\\\\d+)_"', r"no \(\?P<subject>"),
        ('"(unclosed"', "not a valid regular expression"),
        ("3", "non-empty string"),
    ):
        config.write_text(f"[datasets.cohort]\ngroup_pattern = {bad}\n")
        expected = rf"datasets.toml: dataset 'cohort': .*{message}"
        with pytest.raises(DatasetConfigError, match=expected):
            load_raw_data_config(tmp_path)


def test_a_dataset_names_its_mask_convention_and_its_mask_folder_counts_in_its_version(
    tmp_path: Path,
) -> None:
    (tmp_path / "seg" / "yes").mkdir(parents=True)
    (tmp_path / "mirror" / "yes").mkdir(parents=True)
    (tmp_path / "seg" / "yes" / "a.png").write_bytes(b"x")
    (tmp_path / "datasets.toml").write_text(
        '[datasets.seg]\nlesion_masks = {suffix = "_seg"}\n'
        '[datasets.mirrored]\npath = "seg"\nlesion_masks = {folder = "mirror"}\n'
    )
    seg, mirrored = load_raw_data_config(tmp_path).datasets
    assert (seg.lesion_masks.suffix, seg.lesion_masks.folder) == ("_seg", None)
    assert mirrored.lesion_masks.folder == tmp_path / "mirror"
    before = dataset_fingerprint(mirrored.root, mirrored.lesion_masks.folder)
    (tmp_path / "mirror" / "yes" / "a.png").write_bytes(b"mask")
    assert dataset_fingerprint(mirrored.root, mirrored.lesion_masks.folder) != before
