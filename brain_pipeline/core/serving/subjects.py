"""One answer per subject from the answers of its slices.

A scan is judged slice by slice; a clinician asks about the person. Slices are grouped by the
subject id their file names carry (`core/data/subjects.py`: a given pattern, else the built-in
layouts'); a subject's answer is the mean of its judged slices' probabilities, with how far
the slices agree beside it. Slices the guard refused count as refused, not as votes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from brain_pipeline.core.classes import TARGET_CLASSES
from brain_pipeline.core.data.subjects import subject_of


def per_subject(
    names: Sequence[str], answers: Sequence[dict], pattern: re.Pattern | None = None
) -> list[dict]:
    """One record per subject named in `names` (file names or paths, one per answer), in
    order of first appearance; slices whose name gives no subject are left out."""
    slices: dict[str, list[dict]] = {}
    for name, answer in zip(names, answers, strict=True):
        subject = subject_of(str(name), pattern)
        if subject is not None:
            slices.setdefault(subject, []).append(answer)
    return [_subject_answer(subject, members) for subject, members in slices.items()]


def _subject_answer(subject: str, answers: list[dict]) -> dict:
    judged = [a for a in answers if a.get("probabilities")]
    record = {"subject": subject, "n_slices": len(answers), "n_refused": len(answers) - len(judged)}
    if not judged:
        return record | {"predicted_class": None, "probabilities": None, "slice_agreement": None}
    matrix = np.array([[a["probabilities"][c] for c in TARGET_CLASSES] for a in judged])
    mean = matrix.mean(axis=0)
    predicted = TARGET_CLASSES[int(mean.argmax())]
    votes = [a["predicted_class"] for a in judged]
    return record | {
        "predicted_class": predicted,
        "probabilities": {c: float(p) for c, p in zip(TARGET_CLASSES, mean, strict=True)},
        # The share of judged slices whose own answer is the subject's, and the spread of
        # the subject's class probability over its slices.
        "slice_agreement": votes.count(predicted) / len(votes),
        "probability_spread": float(matrix[:, int(mean.argmax())].std()),
        "slice_classes": {c: votes.count(c) for c in TARGET_CLASSES if c in votes},
    }
