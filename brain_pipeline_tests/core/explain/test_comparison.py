"""Methods compared on the same lesioned images, and Dice thresholds chosen on other patients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brain_pipeline.core.explain.comparison import LesionedImages, compare_methods
from brain_pipeline.core.explain.localisation import (
    cross_fitted_dice_percentiles,
    localisation_rows,
)


def _lesioned(images, masks, prefix: str) -> LesionedImages:
    owners = pd.DataFrame(
        {"dataset": "tiny", "patient": [f"{prefix}{i // 2}" for i in range(len(images))]}
    )
    return LesionedImages(images, list(masks), owners)


def test_methods_are_compared_per_dataset_with_thresholds_from_other_patients(
    model, lesion_set, train_data
):
    images, _, masks = lesion_set
    masks = [*masks[:-1], np.zeros_like(masks[0])]  # an empty mask is left out
    scored = _lesioned(images, masks, "test")
    cross_fitted = compare_methods(
        model, scored, ["gradcam", "occlusion"], skull_stripped=True, log=lambda _: None
    )
    assert set(cross_fitted) == {"gradcam", "occlusion"}
    for figures in (cross_fitted["gradcam"]["tiny"], cross_fitted["occlusion"]["tiny"]):
        assert figures["n_images"] == len(images) - 1
        point, chance = figures["pointing_game"], figures["pointing_game_chance"]
        assert point["estimate"] > chance["estimate"] + 0.3 and point["low"] <= point["estimate"]
        assert figures["dice"]["estimate"] > 0.1
        assert figures["deletion_auc"] < figures["deletion_auc_random"]
        assert isinstance(figures["dice_percentile"], float | list)
    train_images, train_labels, train_masks = train_data
    lesioned = np.flatnonzero(train_labels == 1)
    train = _lesioned(train_images[lesioned], [train_masks[i] for i in lesioned], "train")
    chosen = compare_methods(model, scored, ["gradcam"], skull_stripped=True, train=train)
    assert isinstance(chosen["gradcam"]["tiny"]["dice_percentile"], float)


def test_each_image_gets_the_threshold_that_suits_the_other_patients():
    # Patient "big" has lesions over half the brain (best at the 50th percentile), patient
    # "small" tiny ones (best at the 90th or above); each gets the other's threshold.
    brain = np.ones((20, 20), bool)
    big, small = np.zeros((20, 20), bool), np.zeros((20, 20), bool)
    big[:10], small[:2, :10] = True, True
    masks = [big, big, small, small]
    maps = np.stack([mask + 0.01 * np.arange(400).reshape(20, 20) / 400 for mask in masks])
    patients = ["big", "big", "small", "small"]
    chosen = cross_fitted_dice_percentiles(maps, masks, [brain] * 4, patients)
    assert chosen[0] == chosen[1] >= 90.0 and chosen[2] == chosen[3] == 50.0
    per_image = localisation_rows(maps, masks, [brain] * 4, chosen)
    one = localisation_rows(maps[:1], masks[:1], [brain], float(chosen[0]))
    assert per_image["dice"].iloc[0] == pytest.approx(one["dice"].iloc[0])
    with pytest.raises(ValueError, match="at least two patients"):
        cross_fitted_dice_percentiles(maps, masks, [brain] * 4, ["one"] * 4)
