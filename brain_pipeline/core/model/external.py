"""Scoring a model on an external dataset: the questions its labels can answer.

A download with all three classes gets the 3-class metrics; otherwise the binary questions
it can answer: tumour vs not (tumour sets, 4-class tumour layouts included: glioma,
meningioma and pituitary are tumour, notumor healthy) and healthy vs Alzheimer (the decision
between those two classes, as within the Alzheimer source). Every figure carries a 95%
interval over the set's own near-duplicate groups.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from brain_pipeline.core import artifact_names
from brain_pipeline.core.classes import ALZHEIMER, HEALTHY, TUMOR
from brain_pipeline.core.model.intervals import (
    group_bootstrap_intervals,
    group_bootstrap_mean,
)


def binary_answers(
    truth: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per binary question the set can answer: (rows it asks about, answered right)."""
    tumour, healthy, alzheimer = (class_names.index(c) for c in (TUMOR, HEALTHY, ALZHEIMER))
    present = set(truth.tolist())
    answers = {}
    if tumour in present and len(present) > 1:
        said_tumour = probabilities.argmax(axis=1) == tumour
        answers["tumour_vs_not"] = (np.ones(len(truth), bool), said_tumour == (truth == tumour))
    if {healthy, alzheimer} <= present:
        asked = np.isin(truth, [healthy, alzheimer])
        said_alzheimer = probabilities[:, alzheimer] > probabilities[:, healthy]
        answers["healthy_vs_alzheimer"] = (asked, said_alzheimer == (truth == alzheimer))
    return answers


def external_scores(
    rows: pd.DataFrame, probabilities: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Scores of the scored rows (`target_class`, `source_label`, `group`)."""
    class_names = list(class_names)
    truth = np.array([class_names.index(c) for c in rows["target_class"]])
    groups = rows["group"].to_numpy()
    scores: dict = {"n_images": len(rows), "n_groups": int(len(set(groups)))}
    if len(rows) == 0:
        return scores | {"questions": {}}
    questions: dict = {}
    if len(set(truth.tolist())) == len(class_names):
        three = group_bootstrap_intervals(groups, truth, probabilities, class_names)["metrics"]
        questions["three_class"] = {k: three[k] for k in ("accuracy", "f1_macro")}
    for name, (asked, right) in binary_answers(truth, probabilities, class_names).items():
        questions[name] = {
            "n_images": int(asked.sum()),
            "accuracy": group_bootstrap_mean(groups[asked], right[asked]),
        }
    scores["questions"] = questions
    scores["per_folder_label"] = _per_label(rows, truth, probabilities, class_names)
    return scores


def _per_label(rows, truth, probabilities, class_names) -> dict:
    """Per source folder label (glioma, notumor, ...): images and the share given the right
    class (3-class argmax)."""
    predicted = probabilities.argmax(axis=1)
    labels = rows["source_label"].to_numpy()
    return {
        str(label): {
            "n_images": int((labels == label).sum()),
            "share_right": float((predicted == truth)[labels == label].mean()),
            "class": str(rows["target_class"].to_numpy()[labels == label][0]),
        }
        for label in sorted(set(labels.tolist()))
    }


def headline(scores: dict) -> str:
    """One line per dataset for tables: each question's accuracy with its interval."""
    parts = []
    for name, question in scores.get("questions", {}).items():
        figure = question["accuracy"]
        if figure:
            parts.append(
                f"{name} {figure['estimate']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]"
            )
    return "; ".join(parts) or "nothing scored"


def results_for_version(artifacts_dir: Path, model_version: str) -> dict | None:
    """The newest external evaluation of `model_version` under the artifacts root."""
    configuration = model_version.split("@")[0]
    records = sorted(
        Path(artifacts_dir, "external_evaluation", configuration).glob(
            f"*/{artifact_names.EXTERNAL}"
        ),
        reverse=True,
    )
    for record in records:
        result = json.loads(record.read_text())
        if result.get("model_version") == model_version:
            return result
    return None
