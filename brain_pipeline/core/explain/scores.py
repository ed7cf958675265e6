"""Explanation quality of a model over a set of images, in one record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import keras
import numpy as np

from brain_pipeline.core.explain.faithfulness import (
    perturbation_aucs,
    randomize_weights,
    rank_correlation,
    ssim,
)
from brain_pipeline.core.explain.heatmaps import as_image_batch, gradcam, random_heatmaps
from brain_pipeline.core.explain.localisation import (
    heat_share,
    pointing_game_chance,
    pointing_game_hit,
    pointing_tolerance_px,
)
from brain_pipeline.core.imaging.brain_mask import brain_mask


@dataclass(frozen=True)
class ExplanationScores:
    """Explanation quality aggregated over a set of images (None = not applicable)."""

    deletion_auc: float
    deletion_auc_random: float
    insertion_auc: float
    insertion_auc_random: float
    sanity_rank_corr: float
    sanity_ssim: float
    heat_in_brain: float
    pointing_game: float | None
    heat_in_lesion: float | None
    n_images: int
    n_with_lesion_mask: int
    pointing_tolerance_px: int | None = None
    # Deletion with RISE's black fill, for comparison (see DELETION_FILLS).
    deletion_auc_zero: float | None = None
    deletion_auc_zero_random: float | None = None
    # The pointing game of a peak placed at random in the brain (see pointing_game_chance).
    pointing_game_chance: float | None = None
    # The same localisation against the whole tumour: core and oedema halo.
    pointing_game_whole_tumour: float | None = None
    pointing_game_whole_tumour_chance: float | None = None
    heat_in_whole_tumour: float | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _mean(values: list[float] | np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def score_explanations(
    model: keras.Model,
    images: np.ndarray,
    heatmaps: np.ndarray,
    class_indices: np.ndarray,
    *,
    lesion_masks: list[np.ndarray | None] | None = None,
    whole_tumour_masks: list[np.ndarray | None] | None = None,
    lesion_images: np.ndarray | None = None,
    lesion_class: int | None = None,
    seed: int = 0,
    method: str = "gradcam",
    layer_name: str | None = None,
    skull_stripped: bool = False,
) -> ExplanationScores:
    """Faithfulness, sanity and plausibility of ``heatmaps`` (made with ``method``).

    Localisation (pointing game, heat in lesion) uses ``lesion_masks``, one per image of
    ``lesion_images`` (default: ``images``; None entries are skipped), and the same for
    ``whole_tumour_masks`` (core and oedema halo) when given. With ``lesion_class``
    it scores that class's maps (the ground-truth class, as in the pointing game of Zhang et
    al.), whatever the model predicted: is the evidence for "tumour" on the tumour? Without
    it, the given ``heatmaps`` are scored. ``skull_stripped`` says the images were
    skull-stripped by the preprocessing, which decides their brain mask (see brain_mask).
    """
    images = as_image_batch(images)
    heatmaps = np.asarray(heatmaps, np.float32)
    class_indices = np.asarray(class_indices, np.int64)
    lesion_images = _checked_lesion_inputs(
        images, lesion_images, lesion_class, lesion_masks, whole_tumour_masks
    )
    perturbed, perturbed_random = _perturbation_scores(model, images, heatmaps, class_indices, seed)
    rank_corr, similarity = _sanity_scores(
        model, images, heatmaps, class_indices, seed, method=method, layer_name=layer_name
    )
    in_brain = [
        heat_share(h, brain_mask(i, skull_stripped=skull_stripped))
        for h, i in zip(heatmaps, images, strict=True)
    ]
    masks = lesion_masks if lesion_masks is not None else [None] * len(lesion_images)
    lesioned = [i for i, m in enumerate(masks) if m is not None and np.any(m)]
    if lesion_class is None:
        lesion_maps = heatmaps[lesioned]
    else:
        lesion_maps = gradcam(
            model,
            lesion_images[lesioned],
            np.full(len(lesioned), lesion_class),
            layer_name=layer_name,
            method=method,
        )
    brains = [brain_mask(lesion_images[i], skull_stripped=skull_stripped) for i in lesioned]
    core = _localisation(lesion_maps, [masks[i] for i in lesioned], brains)
    whole = (
        _localisation(lesion_maps, [whole_tumour_masks[i] for i in lesioned], brains)
        if whole_tumour_masks is not None
        else _Localisation(None, None, None)
    )
    return ExplanationScores(
        deletion_auc=_mean(perturbed["deletion_blur"]),
        deletion_auc_random=_mean(perturbed_random["deletion_blur"]),
        insertion_auc=_mean(perturbed["insertion"]),
        insertion_auc_random=_mean(perturbed_random["insertion"]),
        sanity_rank_corr=rank_corr,
        sanity_ssim=similarity,
        heat_in_brain=_mean(in_brain),
        pointing_game=core.pointing_game,
        heat_in_lesion=core.heat_share,
        n_images=len(images),
        n_with_lesion_mask=len(lesioned),
        pointing_tolerance_px=pointing_tolerance_px(images.shape[1]) if lesioned else None,
        deletion_auc_zero=_mean(perturbed["deletion_zero"]),
        deletion_auc_zero_random=_mean(perturbed_random["deletion_zero"]),
        pointing_game_chance=core.chance,
        pointing_game_whole_tumour=whole.pointing_game,
        pointing_game_whole_tumour_chance=whole.chance,
        heat_in_whole_tumour=whole.heat_share,
    )


def _checked_lesion_inputs(
    images: np.ndarray,
    lesion_images: np.ndarray | None,
    lesion_class: int | None,
    lesion_masks: list[np.ndarray | None] | None,
    whole_tumour_masks: list[np.ndarray | None] | None,
) -> np.ndarray:
    """The images the lesion masks belong to, after checking the masks fit them."""
    if lesion_images is not None and lesion_class is None:
        raise ValueError("lesion_images need a lesion_class to explain them with")
    lesion_images = images if lesion_images is None else as_image_batch(lesion_images)
    if lesion_masks is not None and len(lesion_masks) != len(lesion_images):
        raise ValueError("lesion_masks must have one entry (or None) per lesion image")
    if whole_tumour_masks is not None and len(whole_tumour_masks) != len(lesion_images):
        raise ValueError("whole_tumour_masks must have one entry (or None) per lesion image")
    return lesion_images


def _perturbation_scores(
    model: keras.Model,
    images: np.ndarray,
    heatmaps: np.ndarray,
    class_indices: np.ndarray,
    seed: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Deletion / insertion AUCs of the maps and of seeded random maps on the same images."""
    random_maps = random_heatmaps(np.random.default_rng(seed), heatmaps.shape)
    # Both fills from one pass each: the blurred one is the score, black for comparison.
    fills = ("blur", "zero")
    return (
        perturbation_aucs(model, images, heatmaps, class_indices, deletion_fills=fills),
        perturbation_aucs(model, images, random_maps, class_indices, deletion_fills=fills),
    )


def _sanity_scores(
    model: keras.Model,
    images: np.ndarray,
    heatmaps: np.ndarray,
    class_indices: np.ndarray,
    seed: int,
    *,
    method: str,
    layer_name: str | None,
) -> tuple[float, float]:
    """Mean rank correlation and SSIM of the maps with those of the same images and classes
    under randomised weights: a faithful method's maps must change."""
    scrambled = gradcam(
        randomize_weights(model, seed), images, class_indices, layer_name=layer_name, method=method
    )
    pairs = list(zip(heatmaps, scrambled, strict=True))
    return _mean([rank_correlation(h, s) for h, s in pairs]), _mean([ssim(h, s) for h, s in pairs])


class _Localisation(NamedTuple):
    pointing_game: float | None
    chance: float | None
    heat_share: float | None


def _localisation(
    heatmaps: np.ndarray, masks: list[np.ndarray | None], brains: list[np.ndarray]
) -> _Localisation:
    """Pointing game, its chance rate and heat share of maps against their masks (None skipped)."""
    triples = [
        (h, np.asarray(m, bool), b)
        for h, m, b in zip(heatmaps, masks, brains, strict=True)
        if m is not None and np.any(m)
    ]
    if not triples:
        return _Localisation(None, None, None)
    return _Localisation(
        _mean([pointing_game_hit(h, m) for h, m, _ in triples]),
        _mean([pointing_game_chance(m, b) for _, m, b in triples]),
        _mean([heat_share(h, m) for h, m, _ in triples]),
    )
