"""Explanation quality of a model over a set of images, in one record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import keras
import numpy as np
import pandas as pd

from brain_pipeline.core.explain.faithfulness import (
    perturbation_aucs,
    randomize_weights,
    rank_correlation,
    ssim,
)
from brain_pipeline.core.explain.heatmaps import as_image_batch, random_heatmaps
from brain_pipeline.core.explain.localisation import (
    LOCALISATION_FIGURES,
    heat_share,
    localisation_rows,
    pointing_tolerance_px,
)
from brain_pipeline.core.explain.methods import explanation_maps
from brain_pipeline.core.imaging.brain_mask import brain_mask
from brain_pipeline.core.model.intervals import group_bootstrap_mean


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
    # Against the lesion's area: the heat share a map spread evenly over the brain puts in
    # it (heat_in_lesion's chance level), the share of the hottest 5% of the brain's pixels
    # that lie in it, and the pointing game of a Gaussian at the brain's centre.
    lesion_area_fraction: float | None = None
    top5_in_lesion: float | None = None
    centre_baseline_pointing_game: float | None = None
    whole_tumour_area_fraction: float | None = None
    top5_in_whole_tumour: float | None = None
    centre_baseline_pointing_game_whole_tumour: float | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _mean(values: list[float] | np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


@dataclass(frozen=True)
class MapSettings:
    """How the maps are made (method, layer) and scored (the seed of the random maps and
    weights they are compared with; the brain mask that fits the preprocessing)."""

    method: str = "gradcam"
    layer_name: str | None = None
    seed: int = 0
    skull_stripped: bool = False  # the preprocessing stripped the skull (see brain_mask)


@dataclass(frozen=True)
class Lesions:
    """Ground truth for localisation: one mask (or None) per image of `images`.

    `whole_tumour` holds the core with its oedema halo, where known. `images` default to the
    explained images themselves; other images need `target_class`, the class whose maps are
    scored (the ground-truth class, as in the pointing game of Zhang et al.: is the evidence
    for "tumour" on the tumour?), whatever the model predicted.
    """

    masks: list[np.ndarray | None]
    whole_tumour: list[np.ndarray | None] | None = None
    images: np.ndarray | None = None
    target_class: int | None = None
    # The target class's maps of `images`, where the caller made them already.
    maps: np.ndarray | None = None


def score_explanations(
    model: keras.Model,
    images: np.ndarray,
    heatmaps: np.ndarray,
    class_indices: np.ndarray,
    settings: MapSettings = MapSettings(),  # noqa: B008 (frozen, so safe to share)
    lesions: Lesions | None = None,
) -> ExplanationScores:
    """Faithfulness, sanity and plausibility of ``heatmaps`` (made as ``settings`` says).

    Localisation (pointing game, heat in lesion) is scored against ``lesions`` where given:
    on the maps of its `target_class` if it names one, else on the given ``heatmaps``.
    """
    images = as_image_batch(images)
    heatmaps = np.asarray(heatmaps, np.float32)
    class_indices = np.asarray(class_indices, np.int64)
    lesions = _checked_lesions(images, lesions)
    perturbed, perturbed_random = _perturbation_scores(
        model, images, heatmaps, class_indices, settings.seed
    )
    rank_corr, similarity = _sanity_scores(model, images, heatmaps, class_indices, settings)
    in_brain = [
        heat_share(h, brain_mask(i, skull_stripped=settings.skull_stripped))
        for h, i in zip(heatmaps, images, strict=True)
    ]
    lesioned = [i for i, m in enumerate(lesions.masks) if m is not None and np.any(m)]
    if lesions.target_class is None:
        lesion_maps = heatmaps[lesioned]
    elif lesions.maps is not None:
        lesion_maps = np.asarray(lesions.maps)[lesioned]
    else:
        lesion_maps = explanation_maps(
            model,
            lesions.images[lesioned],
            np.full(len(lesioned), lesions.target_class),
            layer_name=settings.layer_name,
            method=settings.method,
        )
    brains = [
        brain_mask(lesions.images[i], skull_stripped=settings.skull_stripped) for i in lesioned
    ]
    core = _localisation(lesion_maps, [lesions.masks[i] for i in lesioned], brains)
    whole = (
        _localisation(lesion_maps, [lesions.whole_tumour[i] for i in lesioned], brains)
        if lesions.whole_tumour is not None
        else _Localisation(*[None] * len(_Localisation._fields))
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
        lesion_area_fraction=core.area_fraction,
        top5_in_lesion=core.top5,
        centre_baseline_pointing_game=core.centre_pointing_game,
        whole_tumour_area_fraction=whole.area_fraction,
        top5_in_whole_tumour=whole.top5,
        centre_baseline_pointing_game_whole_tumour=whole.centre_pointing_game,
    )


def _checked_lesions(images: np.ndarray, lesions: Lesions | None) -> Lesions:
    """`lesions` with its images filled in (no lesions: no masks), after checking the masks
    fit those images."""
    if lesions is None:
        return Lesions(masks=[None] * len(images), images=images)
    if lesions.images is not None and lesions.target_class is None:
        raise ValueError("lesion images need a target_class to explain them with")
    lesion_images = images if lesions.images is None else as_image_batch(lesions.images)
    if len(lesions.masks) != len(lesion_images):
        raise ValueError("lesion masks must have one entry (or None) per lesion image")
    if lesions.whole_tumour is not None and len(lesions.whole_tumour) != len(lesion_images):
        raise ValueError("whole_tumour masks must have one entry (or None) per lesion image")
    return dataclasses.replace(lesions, images=lesion_images)


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
    settings: MapSettings,
) -> tuple[float, float]:
    """Mean rank correlation and SSIM of the maps with those of the same images and classes
    under randomised weights: a faithful method's maps must change."""
    scrambled = explanation_maps(
        randomize_weights(model, settings.seed),
        images,
        class_indices,
        layer_name=settings.layer_name,
        method=settings.method,
    )
    pairs = list(zip(heatmaps, scrambled, strict=True))
    return _mean([rank_correlation(h, s) for h, s in pairs]), _mean([ssim(h, s) for h, s in pairs])


class _Localisation(NamedTuple):
    """Means of LOCALISATION_FIGURES, in their order."""

    pointing_game: float | None
    chance: float | None
    heat_share: float | None
    area_fraction: float | None
    top5: float | None
    centre_pointing_game: float | None


def _localisation(
    heatmaps: np.ndarray, masks: list[np.ndarray | None], brains: list[np.ndarray]
) -> _Localisation:
    """Pointing game, its chance rate, heat share and the rest of `_Localisation` of maps
    against their masks (None skipped), and the brain-centre baseline's pointing game."""
    triples = [
        (h, np.asarray(m, bool), b)
        for h, m, b in zip(heatmaps, masks, brains, strict=True)
        if m is not None and np.any(m)
    ]
    if not triples:
        return _Localisation(*[None] * len(_Localisation._fields))
    means = localisation_rows(*zip(*triples, strict=True)).mean()
    return _Localisation(*(float(means[figure]) for figure in LOCALISATION_FIGURES))


def localisation_by_dataset(
    maps: np.ndarray,
    masks: list[np.ndarray],
    images: np.ndarray,
    owners: pd.DataFrame,
    *,
    skull_stripped: bool,
    dice_percentile: float | np.ndarray | None = None,
) -> dict[str, dict]:
    """Each localisation figure per dataset (`owners`: one row per image with its `dataset`
    and `patient`), as a mean with its 95% interval over patients; images whose mask is
    empty at this size are left out. With `dice_percentile` (chosen on other patients: one
    for all images, or one per image), the Dice overlap of the maps thresholded there too."""
    kept = [i for i, mask in enumerate(masks) if mask is not None and np.any(mask)]
    brains = [brain_mask(images[i], skull_stripped=skull_stripped) for i in kept]
    percentiles = (
        None
        if dice_percentile is None
        else np.broadcast_to(np.asarray(dice_percentile, float), (len(masks),))[kept]
    )
    table = localisation_rows(np.asarray(maps)[kept], [masks[i] for i in kept], brains, percentiles)
    figures = list(table.columns)
    table[["dataset", "patient"]] = owners[["dataset", "patient"]].to_numpy()[kept]
    table["percentile"] = percentiles
    result = {}
    for dataset, rows in table.groupby("dataset"):
        patients = rows["patient"].to_numpy()
        result[str(dataset)] = {
            "n_images": len(rows),
            "n_patients": int(rows["patient"].nunique()),
            **{f: group_bootstrap_mean(patients, rows[f].to_numpy()) for f in figures},
        }
        if percentiles is not None:
            chosen = sorted({float(q) for q in rows["percentile"]})
            result[str(dataset)]["dice_percentile"] = chosen[0] if len(chosen) == 1 else chosen
    return result
