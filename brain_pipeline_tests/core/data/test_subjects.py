"""Subject ids and lesion masks read from file names."""

from __future__ import annotations

import re

import pytest

from brain_pipeline.core.data.mask_conventions import is_lesion_mask, masks_beside_images
from brain_pipeline.core.data.sources import IMAGE_SUFFIXES
from brain_pipeline.core.data.subjects import compile_group_pattern, subject_of


@pytest.mark.parametrize(
    ("path", "subject"),
    [
        ("train/AD/218391_80.jpeg", "218391"),
        ("train/NC/S_1234_a_12.jpg", "S_1234_a"),  # the last _<number> is the slice
        ("kaggle_3m/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_12.png", "TCGA_CS_4941"),
        ("TCGA_HT_A61A_20000127/TCGA_HT_A61A_20000127_3.tif", "TCGA_HT_A61A"),
        # Layouts without ids: no subject, whatever their names look like.
        ("Image-dataset/train/NonDemented/nonDem_12.jpg", None),
        ("yes/Y1.jpg", None),
        ("Brain Tumor Data Set/Brain Tumor/Cancer (374).jpg", None),
        ("train/AD/readme_notes.txt", None),
    ],
)
def test_the_built_in_layouts_name_their_subjects(path: str, subject: str | None) -> None:
    assert subject_of(path) == subject


def test_a_dataset_pattern_replaces_the_built_in_ones() -> None:
    pattern = compile_group_pattern(r"^(?P<subject>patient\d+)/")
    assert subject_of("patient7/slice_3.png", pattern) == "patient7"
    assert subject_of("train/AD/218391_80.jpeg", pattern) is None
    assert subject_of(r"patient8\slice_1.png", pattern) == "patient8"  # Windows separators


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(unclosed", "not a valid regular expression"),
        (r"^(\d+)_", r"no \(\?P<subject>\.\.\.\) group"),
        ("", "non-empty string"),
        (12, "non-empty string"),
    ],
)
def test_a_bad_group_pattern_says_what_is_wrong(pattern: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_group_pattern(pattern)


def test_lesion_masks_pair_with_the_image_beside_them() -> None:
    files = [
        "TCGA_A/TCGA_A_1.png",
        "TCGA_A/TCGA_A_1_mask.png",
        "TCGA_A/TCGA_A_2.tif",
        "TCGA_A/TCGA_A_2_MASK.png",  # case and suffix may differ
        "TCGA_B/TCGA_A_1_mask.png",  # another folder: not the image's
        "TCGA_B/notes_mask.txt",  # not an image suffix: not a mask either
    ]
    mask_of, image_of = masks_beside_images(files, IMAGE_SUFFIXES)
    assert mask_of == {
        "TCGA_A/TCGA_A_1.png": "TCGA_A/TCGA_A_1_mask.png",
        "TCGA_A/TCGA_A_2.tif": "TCGA_A/TCGA_A_2_MASK.png",
    }
    assert image_of == {
        "TCGA_A/TCGA_A_1_mask.png": "TCGA_A/TCGA_A_1.png",
        "TCGA_A/TCGA_A_2_MASK.png": "TCGA_A/TCGA_A_2.tif",
        "TCGA_B/TCGA_A_1_mask.png": None,
    }
    assert is_lesion_mask("x/y_mask.jpeg") and not is_lesion_mask("x/masking.png")
    # another ending, as a dataset's lesion_masks = {suffix = "_seg"} gives
    mask_of, _ = masks_beside_images(
        ["a/1.png", "a/1_seg.png", "a/2_mask.png"], IMAGE_SUFFIXES, "_seg"
    )
    assert mask_of == {"a/1.png": "a/1_seg.png"}


def test_the_built_in_patterns_have_a_subject_group() -> None:
    from brain_pipeline.core.data.subjects import BUILT_IN_PATTERNS

    for pattern in BUILT_IN_PATTERNS.values():
        assert isinstance(pattern, re.Pattern) and "subject" in pattern.groupindex


def test_a_row_s_patient_is_its_named_subject_else_its_group() -> None:
    import pandas as pd

    from brain_pipeline.core.data.subjects import patients_of

    rows = pd.DataFrame(
        {
            "dataset": ["lgg", "lgg", "kaggle"],
            "subjects": [["lgg:TCGA_CS_1"], ["lgg:TCGA_CS_1"], []],
            "group_id": ["g1", "g2", "g3"],
        }
    )
    assert patients_of(rows).to_dict("list") == {
        "dataset": ["lgg", "lgg", "kaggle"],
        "patient": ["lgg:TCGA_CS_1", "lgg:TCGA_CS_1", "group:g3"],
    }
