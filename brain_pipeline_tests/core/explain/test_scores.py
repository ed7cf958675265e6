"""score_explanations: the explanation record of the tiny CNN over a set of images."""

from __future__ import annotations

import numpy as np
import pytest

from brain_pipeline.core.explain.heatmaps import gradcam
from brain_pipeline.core.explain.localisation import heat_share, pointing_tolerance_px
from brain_pipeline.core.explain.scores import (
    ExplanationScores,
    Lesions,
    MapSettings,
    score_explanations,
)
from brain_pipeline.core.imaging.brain_mask import brain_mask, dilate


def test_score_explanations(model, test_data):
    images, labels, masks = test_data
    maps = gradcam(model, images, labels)
    scores = score_explanations(model, images, maps, labels, lesions=Lesions(masks))
    assert scores.n_images == 64 and scores.n_with_lesion_mask == 32
    assert scores.deletion_auc < scores.deletion_auc_random
    assert scores.deletion_auc_zero is not None and scores.deletion_auc_zero_random is not None
    assert scores.deletion_auc_zero != scores.deletion_auc  # a second, black-fill measurement
    # Looser than on lesion images alone: "healthy" maps are mostly brain-shaped,
    # which random networks partly reproduce.
    assert abs(scores.sanity_rank_corr) < 0.6 and scores.sanity_ssim < 0.6
    assert 0.0 <= scores.heat_in_brain <= 1.0
    assert scores.pointing_game is not None and scores.pointing_game > 0.6
    # Well above a peak placed at random in the brain.
    assert scores.pointing_game_chance is not None
    assert scores.pointing_game > scores.pointing_game_chance + 0.3
    assert scores.heat_in_lesion is not None and scores.heat_in_lesion > 0.05
    # Against the lesion's area, its top heat, and a map at the brain's centre.
    assert scores.heat_in_lesion > scores.lesion_area_fraction > 0
    assert scores.top5_in_lesion > scores.lesion_area_fraction
    assert scores.pointing_game > scores.centre_baseline_pointing_game
    data = scores.as_dict()
    assert set(data) >= {"deletion_auc", "pointing_game", "n_with_lesion_mask"}
    # Only the whole-tumour figures are missing: no whole-tumour masks were given.
    missing = {k for k, v in data.items() if v is None}
    assert missing == {
        "pointing_game_whole_tumour",
        "pointing_game_whole_tumour_chance",
        "heat_in_whole_tumour",
        "whole_tumour_area_fraction",
        "top5_in_whole_tumour",
        "centre_baseline_pointing_game_whole_tumour",
    }
    assert all(isinstance(data[k], float | int) for k in set(data) - missing)
    assert data["pointing_tolerance_px"] == pointing_tolerance_px(images.shape[1])

    # Localisation on the lesion class's maps of separately given images gives the same
    # figures here, where every lesion image is labelled (and explained as) that class.
    lesioned = np.array([m is not None and m.any() for m in masks])
    lesion_class = int(labels[lesioned][0])
    assert np.all(labels[lesioned] == lesion_class)
    separate = score_explanations(
        model,
        images[:4],
        maps[:4],
        labels[:4],
        lesions=Lesions(
            [masks[i] for i in np.flatnonzero(lesioned)],
            images=images[lesioned],
            target_class=lesion_class,
        ),
    )
    assert separate.n_images == 4 and separate.n_with_lesion_mask == 32
    assert separate.pointing_game == pytest.approx(scores.pointing_game)
    assert separate.heat_in_lesion == pytest.approx(scores.heat_in_lesion, abs=1e-4)
    with pytest.raises(ValueError, match="target_class"):
        score_explanations(model, images, maps, labels, lesions=Lesions(masks, images=images))

    # Against a larger "whole tumour" (each lesion grown by 2 px): at least the core's hit
    # rate and heat, and a higher chance rate; the core's figures stay as they were.
    grown = [None if m is None else dilate(m, 2) for m in masks]
    whole = score_explanations(model, images, maps, labels, lesions=Lesions(masks, grown))
    assert whole.pointing_game == scores.pointing_game
    assert whole.pointing_game_chance == pytest.approx(scores.pointing_game_chance)
    assert whole.pointing_game_whole_tumour >= scores.pointing_game
    assert whole.heat_in_whole_tumour > scores.heat_in_lesion
    assert whole.pointing_game_whole_tumour_chance > scores.pointing_game_chance
    assert scores.pointing_game_whole_tumour is None and scores.heat_in_whole_tumour is None
    with pytest.raises(ValueError, match="whole_tumour masks"):
        score_explanations(model, images, maps, labels, lesions=Lesions(masks, grown[:3]))

    healthy = labels == 0
    no_masks = score_explanations(model, images[healthy], maps[healthy], labels[healthy])
    assert no_masks.pointing_game is None and no_masks.heat_in_lesion is None
    assert no_masks.n_with_lesion_mask == 0

    # heat_in_brain is measured against the brain mask that fits the preprocessing.
    for stripped in (False, True):
        subset = score_explanations(
            model, images[:8], maps[:8], labels[:8], MapSettings(skull_stripped=stripped)
        )
        expected = [
            heat_share(h, brain_mask(i, skull_stripped=stripped))
            for h, i in zip(maps[:8], images[:8], strict=True)
        ]
        assert subset.heat_in_brain == pytest.approx(np.mean(expected))


def test_mismatched_lesion_inputs_are_refused_before_any_scoring(model, test_data):
    images, labels, masks = test_data
    maps = np.zeros(images.shape[:3], np.float32)
    with pytest.raises(ValueError, match="lesion masks must have one entry"):
        score_explanations(model, images, maps, labels, lesions=Lesions(masks[:3]))
    with pytest.raises(ValueError, match="target_class"):
        score_explanations(model, images, maps, labels, lesions=Lesions(masks, images=images))


def test_explanation_scores_as_dict_round_trips():
    scores = ExplanationScores(
        deletion_auc=0.1,
        deletion_auc_random=0.2,
        insertion_auc=0.8,
        insertion_auc_random=0.6,
        sanity_rank_corr=0.05,
        sanity_ssim=0.1,
        heat_in_brain=0.9,
        pointing_game=None,
        heat_in_lesion=None,
        n_images=3,
        n_with_lesion_mask=0,
    )
    assert ExplanationScores(**scores.as_dict()) == scores
