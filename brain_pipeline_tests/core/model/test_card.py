"""The model card's warnings follow the training data."""

import pytest

from brain_pipeline.core.model.card import _within_source_lines, limitations


@pytest.mark.parametrize(
    ("per_source", "expected"),
    [
        (
            {"kaggle": {"healthy_brain": 5, "alzheimer_brain": 5}, "tumours": {"tumor_brain": 9}},
            "Alzheimer images come from one source;",
        ),
        (
            {
                "adni": {"healthy_brain": 5, "alzheimer_brain": 5},
                "kaggle": {"healthy_brain": 4, "alzheimer_brain": 6},
                "only_ad": {"alzheimer_brain": 3},
            },
            "Alzheimer images come from 3 sources (adni, kaggle, only_ad); healthy vs "
            "Alzheimer within each source that holds both (adni, kaggle)",
        ),
    ],
)
def test_the_alzheimer_warning_counts_the_sources(per_source: dict, expected: str) -> None:
    warnings = limitations(per_source)
    assert warnings[-1].startswith(expected)
    assert len(warnings) == 4


def test_within_source_figures_are_a_table_per_source_when_there_are_any() -> None:
    pooled = {"accuracy": 0.7, "n_images": 20}
    assert _within_source_lines(pooled, {})[0].startswith(
        "Healthy vs Alzheimer within the Alzheimer source: 0.7 (20 images)"
    )
    rows = {"adni": {"n_images": 12, "accuracy": 0.75, "n_subjects": 3, "subject_accuracy": 1.0}}
    lines = _within_source_lines(pooled, rows)
    assert "| adni | 12 | 0.75 | 3 | 1 |" in lines
