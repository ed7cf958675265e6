"""Do heatmaps point at the lesion? Heat share, the pointing game and the peak's distance.

The pointing game follows Zhang et al. (2016): a hit when the hottest pixel lies within a
tolerance of the lesion; its chance rate is what a peak placed at random in the brain scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from brain_pipeline.core.imaging.brain_mask import dilate


def heat_share(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the total (non-negative) heat inside ``mask``; 0.0 if there is no heat."""
    heat = np.clip(np.asarray(heatmap, np.float64).squeeze(), 0.0, None)
    total = heat.sum()
    return float(heat[np.asarray(mask, bool)].sum() / total) if total > 0 else 0.0


# The pointing game's tolerance (Zhang et al., 2016): 15 px at 224 px input.
POINTING_TOLERANCE_AT_224 = 15


def pointing_tolerance_px(image_side: int) -> int:
    """The pointing game's standard tolerance scaled to an image side (9 px at 128 px)."""
    return max(1, round(POINTING_TOLERANCE_AT_224 * image_side / 224))


def pointing_game_hit(
    heatmap: np.ndarray, lesion_mask: np.ndarray, *, tolerance_px: int | None = None
) -> bool:
    """True if the hottest pixel lies in the lesion mask dilated by ``tolerance_px``
    (default: the standard tolerance for the map's size, see pointing_tolerance_px)."""
    heat = np.asarray(heatmap).squeeze()
    if heat.max() <= 0:
        return False  # an empty map points nowhere
    if tolerance_px is None:
        tolerance_px = pointing_tolerance_px(max(heat.shape))
    target = dilate(np.asarray(lesion_mask, bool).squeeze(), tolerance_px)
    return bool(target.ravel()[np.argmax(heat)])


def pointing_game_chance(
    lesion_mask: np.ndarray, brain: np.ndarray, *, tolerance_px: int | None = None
) -> float:
    """The pointing game's hit rate for a peak placed at random in the brain: the share of
    ``brain`` within the tolerance of the lesion. Sets a hit rate against what a map that
    knows nothing but where the brain is would score."""
    lesion = np.asarray(lesion_mask, bool).squeeze()
    brain = np.asarray(brain, bool).squeeze()
    if not brain.any():
        return 0.0
    if tolerance_px is None:
        tolerance_px = pointing_tolerance_px(max(lesion.shape))
    return float((dilate(lesion, tolerance_px) & brain).sum() / brain.sum())


def peak_distance_px(heatmap: np.ndarray, lesion_mask: np.ndarray) -> float:
    """Euclidean distance in pixels from the hottest pixel to the nearest lesion pixel: 0
    inside the lesion, inf for an empty map or mask. Tells a near miss of the pointing game
    (just outside its tolerance) from a map that peaks elsewhere."""
    heat = np.asarray(heatmap).squeeze()
    lesion = np.argwhere(np.asarray(lesion_mask, bool).squeeze())
    if heat.max() <= 0 or len(lesion) == 0:
        return float("inf")
    peak = np.unravel_index(np.argmax(heat), heat.shape)
    return float(np.hypot(*(lesion - np.asarray(peak)).T).min())


def lesion_area_fraction(lesion_mask: np.ndarray, brain: np.ndarray) -> float:
    """The lesion's share of the brain: the heat share a map spread evenly over the brain
    would put in the lesion (what `heat_share` in the lesion is measured against)."""
    lesion = np.asarray(lesion_mask, bool).squeeze()
    brain = np.asarray(brain, bool).squeeze()
    return float((lesion & brain).sum() / brain.sum()) if brain.any() else 0.0


# The share of the hottest pixels `top_heat_in_lesion` looks at.
TOP_HEAT_SHARE = 0.05


def top_heat_in_lesion(
    heatmap: np.ndarray, lesion_mask: np.ndarray, brain: np.ndarray, share: float = TOP_HEAT_SHARE
) -> float:
    """Of the hottest `share` of the brain's pixels, the fraction inside the lesion (0.0 for
    an empty map). Unlike the pointing game it asks of the map's whole peak region, not one
    pixel; its chance level is the lesion's area fraction."""
    heat = np.asarray(heatmap, np.float64).squeeze()
    brain = np.asarray(brain, bool).squeeze()
    lesion = np.asarray(lesion_mask, bool).squeeze()
    if heat.max() <= 0 or not brain.any():
        return 0.0
    inside = heat[brain]
    n_top = max(1, round(share * inside.size))
    top = np.argsort(inside, kind="stable")[-n_top:]
    return float(lesion[brain][top].mean())


def brain_centre_map(brain: np.ndarray) -> np.ndarray:
    """A baseline map that knows only where the brain is: a Gaussian at the brain's centre
    of mass (sigma a quarter of its larger extent), zero outside the brain. A map that beats
    it points at something more than the middle of the head."""
    brain = np.asarray(brain, bool).squeeze()
    if not brain.any():
        return np.zeros(brain.shape, np.float32)
    rows, cols = np.nonzero(brain)
    sigma = max(np.ptp(rows), np.ptp(cols), 1) / 4
    y, x = np.indices(brain.shape)
    distance = (y - rows.mean()) ** 2 + (x - cols.mean()) ** 2
    return (np.exp(-distance / (2 * sigma**2)) * brain).astype(np.float32)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool).squeeze(), np.asarray(b, bool).squeeze()
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 1.0


# The percentiles of a map's heat in the brain tried as its threshold for the Dice overlap.
DICE_PERCENTILES = (50.0, 60.0, 70.0, 80.0, 85.0, 90.0, 95.0, 97.5, 99.0)


def thresholded_map(heatmap: np.ndarray, brain: np.ndarray, percentile: float) -> np.ndarray:
    """The brain pixels whose heat is at or above the map's `percentile` within the brain
    (and above zero): the map read as a segmentation."""
    heat = np.asarray(heatmap, np.float64).squeeze()
    brain = np.asarray(brain, bool).squeeze()
    if not brain.any() or heat.max() <= 0:
        return np.zeros(heat.shape, bool)
    return brain & (heat > 0) & (heat >= np.percentile(heat[brain], percentile))


def best_dice_percentile(
    heatmaps: np.ndarray,
    masks: list[np.ndarray],
    brains: list[np.ndarray],
    candidates: tuple[float, ...] = DICE_PERCENTILES,
) -> float:
    """The threshold percentile of highest mean Dice on these maps (the training patients':
    chosen there, applied to held-out ones)."""
    triples = list(zip(heatmaps, masks, brains, strict=True))
    if not triples:
        raise ValueError("no lesion to choose a threshold on")
    means = [
        np.mean([dice(thresholded_map(h, b, q), m) for h, m, b in triples]) for q in candidates
    ]
    return float(candidates[int(np.argmax(means))])


def cross_fitted_dice_percentiles(
    heatmaps: np.ndarray,
    masks: list[np.ndarray],
    brains: list[np.ndarray],
    patients: Sequence[str],
    seed: int = 0,
) -> np.ndarray:
    """Per image, the Dice threshold percentile chosen on the other half of the patients
    (two halves, drawn at random): where no training patient has a lesion mask (an external
    source), each image's threshold is still chosen on patients other than its own."""
    patients = np.asarray(patients, dtype=str)
    names = np.random.default_rng(seed).permutation(np.unique(patients))
    if len(names) < 2:
        raise ValueError("cross-fitting a Dice threshold needs at least two patients")
    first = np.isin(patients, names[: len(names) // 2])
    chosen = np.empty(len(patients))
    for half in (first, ~first):
        other = np.flatnonzero(~half)
        chosen[half] = best_dice_percentile(
            heatmaps[other], [masks[i] for i in other], [brains[i] for i in other]
        )
    return chosen


def localisation_rows(
    heatmaps: np.ndarray,
    masks: list[np.ndarray],
    brains: list[np.ndarray],
    dice_percentile: float | Sequence[float] | None = None,
) -> pd.DataFrame:
    """One row per (map, lesion mask, brain mask): each localisation figure of that image
    (the pointing games as 0/1), so that any set of them can be averaged or resampled; with
    `dice_percentile` (one for all, or one per image), also the Dice overlap of the map
    thresholded there."""
    percentiles = (
        [None] * len(masks)
        if dice_percentile is None
        else np.broadcast_to(np.asarray(dice_percentile, float), (len(masks),))
    )
    rows = []
    for heat, mask, brain, percentile in zip(heatmaps, masks, brains, percentiles, strict=True):
        lesion = np.asarray(mask, bool)
        row = {
            "pointing_game": float(pointing_game_hit(heat, lesion)),
            "pointing_game_chance": pointing_game_chance(lesion, brain),
            "energy_in_lesion": heat_share(heat, lesion),
            "lesion_area_fraction": lesion_area_fraction(lesion, brain),
            "top5_in_lesion": top_heat_in_lesion(heat, lesion, brain),
            "centre_baseline_pointing_game": float(
                pointing_game_hit(brain_centre_map(brain), lesion)
            ),
        }
        if percentile is not None:
            row["dice"] = dice(thresholded_map(heat, brain, percentile), lesion)
        rows.append(row)
    columns = [*LOCALISATION_FIGURES, *(["dice"] if dice_percentile is not None else [])]
    return pd.DataFrame(rows, columns=columns)


LOCALISATION_FIGURES = (
    "pointing_game",
    "pointing_game_chance",
    "energy_in_lesion",
    "lesion_area_fraction",
    "top5_in_lesion",
    "centre_baseline_pointing_game",
)
