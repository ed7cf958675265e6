"""What a file's name says beyond its class: whose scan it is.

Slices of one subject look alike and must never be split across train, validation and test.
Where a download's names carry a subject or scan id, a regular expression with a named group
`subject` finds it: the dataset's `group_pattern` in datasets.toml, else the built-in
patterns of the layouts this project knows. (Lesion masks: mask_conventions.py.)
"""

from __future__ import annotations

import re

import pandas as pd

SUBJECT_GROUP = "subject"
# The layouts whose names carry a subject id, and how to read it (searched in the path
# relative to the dataset's folder).
BUILT_IN_PATTERNS: dict[str, re.Pattern] = {
    # ADNI slice exports: AD/<scan>_<slice>.jpeg, NC/<scan>_<slice>.jpeg.
    "adni_slices": re.compile(r"(?:^|/)(?:AD|NC)/(?P<subject>[^/]+?)_\d+\.[A-Za-z]+$"),
    # LGG segmentation (kaggle_3m): TCGA_<institution>_<patient>_<date>/<...>_<slice>.png.
    "tcga_patient": re.compile(r"(?:^|/)(?P<subject>TCGA_[A-Za-z0-9]+_[A-Za-z0-9]+)_\d{8}/"),
}


def compile_group_pattern(pattern: object) -> re.Pattern:
    """`pattern` compiled, or ValueError saying what is wrong with it."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"group_pattern must be a non-empty string, got {pattern!r}")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        message = f"group_pattern {pattern!r} is not a valid regular expression: {exc}"
        raise ValueError(message) from exc
    if SUBJECT_GROUP not in compiled.groupindex:
        raise ValueError(
            f"group_pattern {pattern!r} has no (?P<{SUBJECT_GROUP}>...) group naming the subject, "
            r'e.g. "^(?P<subject>[^_/]+)_\d+\.png$"'
        )
    return compiled


def subject_of(relative_path: str, pattern: re.Pattern | None = None) -> str | None:
    """The subject id in a file's path: by `pattern` if given, else by the first built-in
    pattern that matches; None where no pattern matches (or the group is empty)."""
    path = relative_path.replace("\\", "/")
    for candidate in [pattern] if pattern is not None else BUILT_IN_PATTERNS.values():
        found = candidate.search(path)
        if found and found.group(SUBJECT_GROUP):
            return found.group(SUBJECT_GROUP)
    return None


def patients_of(rows: pd.DataFrame) -> pd.DataFrame:
    """Each index row's dataset and patient: the first subject its file names give, else its
    near-duplicate group (the pipeline's stand-in for a subject)."""
    named = rows["subjects"] if "subjects" in rows else [[]] * len(rows)
    patient = [
        str(names[0]) if len(names) else f"group:{group}"
        for names, group in zip(named, rows["group_id"], strict=True)
    ]
    return pd.DataFrame({"dataset": rows["dataset"].to_numpy(), "patient": patient})
