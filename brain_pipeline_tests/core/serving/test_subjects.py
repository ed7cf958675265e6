"""per_subject: one answer per subject from its slices' answers."""

from __future__ import annotations

import pytest

from brain_pipeline.core.data.subjects import compile_group_pattern
from brain_pipeline.core.serving.subjects import per_subject


def _answer(healthy: float, tumour: float, alzheimer: float) -> dict:
    probabilities = {"healthy_brain": healthy, "tumor_brain": tumour, "alzheimer_brain": alzheimer}
    predicted = max(probabilities, key=probabilities.get)
    return {"probabilities": probabilities, "predicted_class": predicted}


REFUSED = {"probabilities": None, "predicted_class": None, "in_distribution": False}


def test_a_subject_is_the_mean_of_its_judged_slices() -> None:
    names = ["AD/111_0.jpeg", "AD/111_4.jpeg", "AD/111_8.jpeg", "NC/222_0.jpeg", "loose.jpg"]
    answers = [
        _answer(0.1, 0.1, 0.8),
        _answer(0.6, 0.0, 0.4),  # one slice says healthy
        REFUSED,  # the guard refused it: not a vote
        _answer(0.2, 0.7, 0.1),
        _answer(1.0, 0.0, 0.0),  # no subject in its name: left out
    ]
    first, second = per_subject(names, answers)
    assert first["subject"] == "111" and (first["n_slices"], first["n_refused"]) == (3, 1)
    assert first["predicted_class"] == "alzheimer_brain"
    assert first["probabilities"]["alzheimer_brain"] == pytest.approx(0.6)
    assert first["slice_agreement"] == 0.5 and first["probability_spread"] == pytest.approx(0.2)
    assert first["slice_classes"] == {"healthy_brain": 1, "alzheimer_brain": 1}
    assert second["subject"] == "222" and second["predicted_class"] == "tumor_brain"


def test_a_given_pattern_groups_bare_file_names_and_refused_subjects_get_no_class() -> None:
    pattern = compile_group_pattern(r"^(?P<subject>p\d+)-")
    (record,) = per_subject(["p1-a.png", "p1-b.png"], [REFUSED, REFUSED], pattern)
    assert record == {
        "subject": "p1",
        "n_slices": 2,
        "n_refused": 2,
        "predicted_class": None,
        "probabilities": None,
        "slice_agreement": None,
    }
    assert per_subject(["AD/111_0.jpeg"], [_answer(0, 0, 1)], pattern) == []
