"""Heat share, the pointing game, its chance rate and the peak's distance to the lesion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brain_pipeline.core.explain.localisation import (
    brain_centre_map,
    heat_share,
    lesion_area_fraction,
    peak_distance_px,
    pointing_game_chance,
    pointing_game_hit,
    pointing_tolerance_px,
    top_heat_in_lesion,
)
from brain_pipeline.core.explain.method_names import METHODS
from brain_pipeline.core.explain.methods import explanation_maps
from brain_pipeline.core.imaging.brain_mask import dilate


@pytest.mark.parametrize("method", METHODS)
def test_pointing_game_beats_chance(model, lesion_set, method):
    images, labels, masks = lesion_set
    maps = explanation_maps(model, images, labels, method=method)
    tolerance = pointing_tolerance_px(images.shape[1])
    hits = [pointing_game_hit(h, m) for h, m in zip(maps, masks, strict=True)]
    # Chance: a random peak lands in the dilated lesion.
    chance = np.mean([dilate(m, tolerance).mean() for m in masks])
    assert chance < 0.25
    assert np.mean(hits) > chance + 0.5
    lesion_share = np.mean([m.mean() for m in masks])
    heat_in_lesion = np.mean([heat_share(h, m) for h, m in zip(maps, masks, strict=True)])
    assert heat_in_lesion > 3 * lesion_share


def test_heat_share_and_pointing_game():
    heat = np.array([[1.0, 0.0], [0.0, 3.0]])
    mask = np.array([[True, False], [False, False]])
    assert heat_share(heat, mask) == pytest.approx(0.25)
    assert heat_share(np.zeros((2, 2)), mask) == 0.0

    heatmap = np.zeros((10, 10))
    heatmap[5, 5] = 1.0
    lesion = np.zeros((10, 10), bool)
    lesion[5, 7] = True
    assert pointing_game_hit(heatmap, lesion, tolerance_px=2)
    assert not pointing_game_hit(heatmap, lesion, tolerance_px=1)
    assert not pointing_game_hit(np.zeros((10, 10)), lesion)
    # The standard tolerance: 15 px at 224 px, scaled to the map's side.
    assert pointing_tolerance_px(224) == 15 and pointing_tolerance_px(128) == 9
    assert not pointing_game_hit(heatmap, lesion)  # a 10 px map gets 1 px of tolerance

    # The peak's distance to the lesion: 2 px here, 0 inside, 5 px on a 3-4-5 triangle.
    assert peak_distance_px(heatmap, lesion) == pytest.approx(2.0)
    lesion[5, 5] = True
    assert peak_distance_px(heatmap, lesion) == 0.0
    far = np.zeros((10, 10), bool)
    far[8, 9] = far[0, 0] = True
    assert peak_distance_px(heatmap, far) == pytest.approx(5.0)
    assert peak_distance_px(np.zeros((10, 10)), far) == float("inf")
    assert peak_distance_px(heatmap, np.zeros((10, 10), bool)) == float("inf")


def test_pointing_game_chance_is_the_share_of_brain_near_the_lesion():
    brain = np.ones((10, 10), bool)
    lesion = np.zeros((10, 10), bool)
    lesion[5, 5] = True
    assert pointing_game_chance(lesion, brain, tolerance_px=0) == pytest.approx(0.01)
    # 1 px of tolerance: the lesion and its four neighbours.
    assert pointing_game_chance(lesion, brain, tolerance_px=1) == pytest.approx(0.05)
    left = np.zeros((10, 10), bool)
    left[:, :5] = True  # only the neighbour at column 4 lies in this brain
    assert pointing_game_chance(lesion, left, tolerance_px=1) == pytest.approx(1 / 50)
    assert pointing_game_chance(lesion, np.zeros((10, 10), bool)) == 0.0


def test_area_fraction_top_heat_and_the_brain_centre_baseline():
    brain = np.zeros((40, 40), bool)
    brain[5:35, 5:35] = True  # 900 px
    lesion = np.zeros((40, 40), bool)
    lesion[8:14, 8:14] = True  # 36 px in a corner of the brain
    assert lesion_area_fraction(lesion, brain) == pytest.approx(36 / 900)
    assert lesion_area_fraction(lesion, np.zeros_like(brain)) == 0.0
    on_lesion = np.zeros((40, 40), np.float32)
    on_lesion[9:13, 9:13] = 1.0  # 16 hottest px, all in the lesion
    on_lesion[20, 20] = 0.5
    assert top_heat_in_lesion(on_lesion, lesion, brain, share=16 / 900) == 1.0
    # 45 px (5%): the 16 in the lesion, the centre pixel, then 28 pixels of zero heat, the
    # last in the brain's order (its bottom rows, outside the lesion).
    assert top_heat_in_lesion(on_lesion, lesion, brain) == pytest.approx(16 / 45)
    assert top_heat_in_lesion(np.zeros((40, 40)), lesion, brain) == 0.0
    centre = brain_centre_map(brain)
    assert centre[20, 20] == centre.max() and centre[~brain].max() == 0
    assert top_heat_in_lesion(centre, lesion, brain) == 0.0  # the corner lesion is missed
    assert brain_centre_map(np.zeros((4, 4), bool)).max() == 0


def test_localisation_by_dataset_resamples_patients_and_skips_empty_masks():
    from brain_pipeline.core.explain.scores import localisation_by_dataset

    images = np.zeros((5, 40, 40, 1), np.float32)
    images[:, 5:35, 5:35] = 0.6  # a skull-stripped "brain": the non-zero square
    masks, maps = [], np.zeros((5, 40, 40), np.float32)
    for i in range(5):
        mask = np.zeros((40, 40), bool)
        if i < 4:
            mask[8 + i : 14 + i, 8:14] = True
        masks.append(mask)  # the last is empty: left out
        maps[i, 10 + i, 10] = 1.0 if i % 2 == 0 else 0.0  # even images point at the lesion
        maps[i, 30, 30] = 0.5
    owners = pd.DataFrame(
        {"dataset": ["a", "a", "a", "b", "b"], "patient": ["p1", "p1", "p2", "q1", "q1"]}
    )
    result = localisation_by_dataset(
        maps, masks, images, owners, skull_stripped=True, dice_percentile=99.0
    )
    assert set(result) == {"a", "b"}
    assert result["a"]["dice_percentile"] == 99.0
    assert 0.0 <= result["a"]["dice"]["estimate"] <= 1.0
    assert (result["a"]["n_images"], result["a"]["n_patients"]) == (3, 2)
    assert (result["b"]["n_images"], result["b"]["n_patients"]) == (1, 1)
    assert result["a"]["pointing_game"]["estimate"] == pytest.approx(2 / 3)
    assert result["b"]["pointing_game"]["estimate"] == 0.0
    low, high = result["a"]["pointing_game"]["low"], result["a"]["pointing_game"]["high"]
    assert low <= 2 / 3 <= high and high - low > 0  # two patients: a real spread
    assert result["a"]["centre_baseline_pointing_game"]["estimate"] == 0.0


def test_dice_of_a_thresholded_map_and_its_threshold_chosen_on_other_maps():
    from brain_pipeline.core.explain.localisation import (
        best_dice_percentile,
        dice,
        thresholded_map,
    )

    brain = np.zeros((20, 20), bool)
    brain[:, :10] = True  # 200 px
    lesion = np.zeros((20, 20), bool)
    lesion[:2, :10] = True  # 20 px: the brain's top 10%
    heat = np.tile(np.linspace(1.0, 0.05, 20)[:, None], (1, 20)).astype(np.float32)
    assert dice(lesion, lesion) == 1.0 and dice(lesion, ~lesion) == 0.0
    assert dice(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    top_tenth = thresholded_map(heat, brain, 90.0)
    assert top_tenth.sum() == 20 and dice(top_tenth, lesion) == 1.0
    assert not thresholded_map(heat, brain, 90.0)[:, 10:].any()  # never outside the brain
    assert not thresholded_map(np.zeros((20, 20)), brain, 50.0).any()
    assert best_dice_percentile([heat, heat], [lesion, lesion], [brain, brain]) == 90.0
    with pytest.raises(ValueError, match="no lesion"):
        best_dice_percentile([], [], [])
