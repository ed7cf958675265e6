"""Explanation methods compared on one model and the same lesioned images: which one points
at the lesion (`benchmarks/localisation.py` prints the table)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from brain_pipeline.core.classes import TARGET_CLASSES, TUMOR
from brain_pipeline.core.data.lesions import lesion_masks_by_region
from brain_pipeline.core.data.sources import RawDataConfig
from brain_pipeline.core.explain.faithfulness import perturbation_aucs
from brain_pipeline.core.explain.heatmaps import random_heatmaps
from brain_pipeline.core.explain.localisation import (
    best_dice_percentile,
    cross_fitted_dice_percentiles,
)
from brain_pipeline.core.explain.method_names import DEFAULT_METHOD
from brain_pipeline.core.explain.methods import explanation_maps
from brain_pipeline.core.explain.scores import localisation_by_dataset
from brain_pipeline.core.imaging.brain_mask import brain_mask
from brain_pipeline.core.imaging.preprocessing import Preprocessing


@dataclass(frozen=True)
class LesionedImages:
    """Model inputs (N, H, W, 1) with their whole-tumour masks in the same geometry and
    their owners (`dataset`, `patient`; one row per image)."""

    images: np.ndarray
    masks: list[np.ndarray | None]
    owners: pd.DataFrame

    def with_lesions(self) -> LesionedImages:
        """Only the images whose mask is not empty at this size."""
        kept = [i for i, mask in enumerate(self.masks) if mask is not None and np.any(mask)]
        return LesionedImages(
            self.images[kept],
            [self.masks[i] for i in kept],
            self.owners.iloc[kept].reset_index(drop=True),
        )


def _tumour_maps(model: keras.Model, images: np.ndarray, method: str) -> np.ndarray:
    """The tumour class's maps (the pointing game's protocol: the true class's evidence)."""
    tumour = TARGET_CLASSES.index(TUMOR)
    return explanation_maps(model, images, np.full(len(images), tumour), method=method)


def compare_methods(
    model: keras.Model,
    scored: LesionedImages,
    methods: Sequence[str],
    *,
    skull_stripped: bool,
    train: LesionedImages | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, dict]]:
    """{method: {dataset: localisation figures with intervals over patients, and the
    deletion AUC of the tumour class (blurred fill) with that of smooth random maps}}.

    Each method's Dice threshold is chosen on `train` (lesioned images of patients the model
    trained on) where it holds any, else cross-fitted over the scored patients (each image's
    threshold chosen on the other half of the patients; no Dice for a single patient)."""
    scored = scored.with_lesions()
    train = train.with_lesions() if train is not None else None
    brains = [brain_mask(image, skull_stripped=skull_stripped) for image in scored.images]
    result = {}
    for method in methods:
        started = time.perf_counter()
        maps = _tumour_maps(model, scored.images, method)
        if not len(maps):
            percentile = None
        elif train is not None and len(train.images):
            train_brains = [brain_mask(i, skull_stripped=skull_stripped) for i in train.images]
            train_maps = _tumour_maps(model, train.images, method)
            percentile = best_dice_percentile(train_maps, train.masks, train_brains)
        elif scored.owners["patient"].nunique() > 1:
            patients = scored.owners["patient"].to_numpy()
            percentile = cross_fitted_dice_percentiles(maps, scored.masks, brains, patients)
        else:  # one patient: no other patients to choose a threshold on, so no Dice
            percentile = None
        result[method] = localisation_by_dataset(
            maps,
            scored.masks,
            scored.images,
            scored.owners,
            skull_stripped=skull_stripped,
            dice_percentile=percentile,
        )
        for dataset, figures in result[method].items():
            figures |= _deletion(model, scored, maps, dataset)
        log(f"{method}: {len(maps)} maps scored in {time.perf_counter() - started:.0f} s")
    return result


def _deletion(model: keras.Model, scored: LesionedImages, maps: np.ndarray, dataset: str) -> dict:
    """Mean deletion AUC of the tumour class on one dataset's images: the maps' order, and
    smooth random maps' (a faithful map removes the evidence sooner: a lower AUC)."""
    rows = np.flatnonzero(scored.owners["dataset"].to_numpy() == dataset)
    images, tumour = scored.images[rows], np.full(len(rows), TARGET_CLASSES.index(TUMOR))
    random_maps = random_heatmaps(np.random.default_rng(0), (len(rows), *images.shape[1:3]))
    aucs = [
        perturbation_aucs(model, images, chosen, tumour)["deletion_blur"]
        for chosen in (maps[rows], random_maps)
    ]
    return {
        "deletion_auc": float(np.mean(aucs[0])),
        "deletion_auc_random": float(np.mean(aucs[1])),
    }


def localisation_of_rows(
    model: keras.Model,
    rows: pd.DataFrame,
    tensors: np.ndarray,
    raw: RawDataConfig,
    preprocessing: Preprocessing,
    method: str = DEFAULT_METHOD,
) -> dict[str, dict]:
    """{dataset: localisation figures} of `method`'s tumour maps on the `rows` (manifest
    rows with `lesion_mask`, `subject`, `group`; `tensors` their model inputs) that have a
    lesion mask, Dice thresholds cross-fitted over their patients (the file names' subject,
    else the near-duplicate group); empty where no row has a mask."""
    masked = np.flatnonzero(rows["lesion_mask"].notna().to_numpy()) if "lesion_mask" in rows else []
    if not len(masked):
        return {}
    subset = rows.iloc[masked].reset_index(drop=True)
    regions = lesion_masks_by_region(raw, subset, preprocessing.image_size, ("whole_tumour",))
    groups = "group:" + subset["group"].astype(str)
    subject = subset["subject"] if "subject" in subset else pd.Series(None, index=subset.index)
    owners = pd.DataFrame(
        {"dataset": subset["dataset"], "patient": subject.where(subject.notna(), groups)}
    )
    images = np.asarray(tensors, np.float32)[masked]
    scored = LesionedImages(images, regions["whole_tumour"], owners)
    table = compare_methods(
        model, scored, [method], skull_stripped=preprocessing.skull_strip, log=lambda _: None
    )
    return table[method]
