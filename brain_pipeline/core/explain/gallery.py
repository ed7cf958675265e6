"""Which test images a gallery shows, and one figure per class and outcome."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd
from PIL import Image

from brain_pipeline.core.classes import TARGET_CLASSES, TUMOR
from brain_pipeline.core.explain.localisation import best_dice_percentile
from brain_pipeline.core.explain.method_names import DEFAULT_METHOD, METHODS
from brain_pipeline.core.explain.methods import explanation_maps
from brain_pipeline.core.explain.overlays import original_view, render_original_overlays
from brain_pipeline.core.explain.scores import (
    Lesions,
    MapSettings,
    localisation_by_dataset,
    score_explanations,
)
from brain_pipeline.core.imaging.brain_mask import brain_mask
from brain_pipeline.core.model.training import predict_probabilities
from brain_pipeline.core.plots import render_gallery

OUTCOMES = ("correct", "misclassified")


def gallery_selection(
    labels: np.ndarray, predicted: np.ndarray, per_gallery: int, seed: int
) -> np.ndarray:
    """Up to `per_gallery` correct and misclassified test images per class, seeded."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for class_index in np.unique(labels):
        for correct in (True, False):
            pool = np.flatnonzero((labels == class_index) & ((predicted == labels) == correct))
            take = rng.permutation(pool)[:per_gallery]
            chosen.extend(sorted(int(i) for i in take))
    return np.array(chosen, dtype=np.int64)


# Test image index -> the image as read and its lesion mask in the same pixels (or None).
OriginalLoader = Callable[[int], tuple[Image.Image, np.ndarray | None]]


def gallery_figures(
    images: np.ndarray,
    heatmaps: np.ndarray,
    chosen: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    load_original: OriginalLoader | None = None,
    method: str = DEFAULT_METHOD,
) -> dict[str, object]:
    """`{class}_{outcome}` -> figure of the chosen images' overlays.

    `heatmaps[k]` is the map of image `chosen[k]`; `labels` and `probabilities` cover every
    image. Empty galleries are drawn too, so every class shows both outcomes. With
    `load_original`, each map is drawn on the image as read (lesion outlined), else on the
    model input.
    """
    predicted = probabilities.argmax(axis=1)
    position_of = {int(image_index): k for k, image_index in enumerate(chosen)}
    figures: dict[str, object] = {}
    for class_index, name in enumerate(class_names):
        for outcome in OUTCOMES:
            members = [
                int(i)
                for i in chosen
                if labels[i] == class_index
                and (predicted[i] == labels[i]) == (outcome == "correct")
            ]
            titles = [
                f"true: {class_names[labels[i]]}\npred: {class_names[predicted[i]]}"
                f" ({probabilities[i, predicted[i]]:.2f})"
                for i in members
            ]
            maps = np.asarray(heatmaps)[[position_of[i] for i in members]]
            figures[f"{name}_{outcome}"] = overlays_of(
                images,
                members,
                maps,
                titles,
                f"{name}: {outcome} ({len(members)})",
                load_original,
                method,
            )
    return figures


def overlays_of(
    images: np.ndarray,
    members: list[int],
    maps: np.ndarray,
    titles: list[str],
    suptitle: str,
    load_original: OriginalLoader | None,
    method: str,
    outlines: list[np.ndarray | None] | None = None,
):
    """A gallery of `maps` of `images[members]`: on the images as read where
    `load_original` gives them (their lesion masks outlined), else on the model inputs
    (with `outlines` in their geometry)."""
    if load_original is not None and members:
        views = []
        for i, heat in zip(members, maps, strict=True):
            image, lesion = load_original(i)
            views.append(original_view(image, heat, lesion))
        return render_original_overlays(views, titles, suptitle=suptitle, method=method)
    side = images.shape[1]
    return render_gallery(
        images[members] if members else np.zeros((0, side, side, 1)),
        maps if members else np.zeros((0, side, side)),
        titles,
        suptitle=suptitle,
        outlines=outlines,
        colour_label=f"{method} relevance",
    )


@dataclass(frozen=True)
class ExplainedTestSet:
    probabilities: np.ndarray  # every test image's
    chosen: np.ndarray  # indices of the gallery images
    heatmaps: np.ndarray  # one map per chosen image
    scores: dict  # ExplanationScores.as_dict()
    # Per dataset with lesion masks: each localisation figure with its interval over patients.
    localisation_by_dataset: dict = field(default_factory=dict)
    # The test images with a lesion mask (indices), their tumour-class maps and their
    # whole-tumour masks: the lesion galleries.
    lesioned: list[int] = field(default_factory=list)
    lesion_maps: np.ndarray | None = None
    lesion_masks: list[np.ndarray | None] = field(default_factory=list)


@dataclass(frozen=True)
class PatientLesions:
    """What localisation per dataset needs beside the test images' masks: each test image's
    `dataset` and `patient` (one row per image), and the training split's images with a
    lesion mask (their whole-tumour masks), on which the Dice threshold is chosen."""

    owners: pd.DataFrame
    train_images: np.ndarray
    train_masks: list[np.ndarray]


@dataclass(frozen=True)
class GallerySettings:
    """What gradcam_gallery shows and how its maps are made (`defs.explanation.GalleryConfig`
    is the launchpad's face of these, field for field)."""

    images_per_gallery: int = 8  # per class and outcome (correct, misclassified)
    method: str = DEFAULT_METHOD  # one of method_names.METHODS
    layer_name: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"gradcam_gallery: method must be one of {', '.join(METHODS)}; got {self.method!r}"
            )

    def maps(self, skull_stripped: bool) -> MapSettings:
        return MapSettings(self.method, self.layer_name, self.seed, skull_stripped)


def explain_test_set(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    lesion_regions: dict[str, list[np.ndarray | None]],
    settings: GallerySettings,
    skull_stripped: bool,
    patients: PatientLesions | None = None,
) -> ExplainedTestSet:
    """Predict the test images, map the gallery's, and score the maps.

    Faithfulness and sanity are scored on the gallery images; localisation on every image
    with a lesion mask (`lesion_regions["core"]` / `["whole_tumour"]`, None where absent),
    on the tumour class's maps: overall, and per dataset on the whole tumour with intervals
    over patients where `patients` is given (with the Dice overlap of maps thresholded at
    the percentile that suits the training patients best).
    """
    probabilities = predict_probabilities(model, images)
    predicted = probabilities.argmax(axis=1)
    chosen = gallery_selection(labels, predicted, settings.images_per_gallery, settings.seed)
    heatmaps = explanation_maps(
        model,
        images[chosen],
        predicted[chosen],
        layer_name=settings.layer_name,
        method=settings.method,
    )
    lesioned = [i for i, mask in enumerate(lesion_regions["core"]) if mask is not None]
    lesions = _tumour_lesions(model, images, lesion_regions, lesioned, settings)
    scores = score_explanations(
        model, images[chosen], heatmaps, predicted[chosen], settings.maps(skull_stripped), lesions
    )
    by_dataset = {}
    if patients is not None and lesioned:
        by_dataset = localisation_by_dataset(
            lesions.maps,
            lesions.whole_tumour,
            images[lesioned],
            patients.owners.iloc[lesioned],
            skull_stripped=skull_stripped,
            dice_percentile=_dice_percentile(model, patients, settings, skull_stripped),
        )
    return ExplainedTestSet(
        probabilities,
        chosen,
        heatmaps,
        scores.as_dict(),
        by_dataset,
        lesioned,
        lesions.maps,
        list(lesions.whole_tumour or []),
    )


def lesion_figures(
    explained: ExplainedTestSet,
    images: np.ndarray,
    datasets: Sequence[str],
    per_dataset: int = 8,
    load_original: OriginalLoader | None = None,
    method: str = DEFAULT_METHOD,
) -> dict[str, object]:
    """`lesions_{dataset}` -> the first `per_dataset` test images of each dataset with lesion
    masks: the tumour-class map over the image (as read, with `load_original`), the
    lesion's outline drawn on it."""
    figures: dict[str, object] = {}
    by_dataset: dict[str, list[int]] = {}
    for k, i in enumerate(explained.lesioned):
        by_dataset.setdefault(str(datasets[i]), []).append(k)
    tumour = TARGET_CLASSES.index(TUMOR)
    for dataset, members in sorted(by_dataset.items()):
        shown = members[:per_dataset]
        indices = [explained.lesioned[k] for k in shown]
        figures[f"lesions_{dataset}"] = overlays_of(
            images,
            indices,
            np.asarray(explained.lesion_maps)[shown],
            [f"P(tumour) {explained.probabilities[i, tumour]:.2f}" for i in indices],
            f"{dataset}: tumour evidence, lesion outlined",
            load_original,
            method,
            outlines=[explained.lesion_masks[k] for k in shown],
        )
    return figures


def _dice_percentile(model, patients: PatientLesions, settings, skull_stripped) -> float | None:
    """The threshold percentile of best mean Dice on the training patients' tumour maps
    (None: no training image has a lesion mask)."""
    kept = [i for i, mask in enumerate(patients.train_masks) if np.any(mask)]
    if not kept:
        return None
    images = patients.train_images[kept]
    tumour = TARGET_CLASSES.index(TUMOR)
    maps = explanation_maps(
        model,
        images,
        np.full(len(kept), tumour),
        layer_name=settings.layer_name,
        method=settings.method,
    )
    brains = [brain_mask(image, skull_stripped=skull_stripped) for image in images]
    return best_dice_percentile(maps, [patients.train_masks[i] for i in kept], brains)


def _tumour_lesions(model, images, lesion_regions, lesioned: list[int], settings) -> Lesions:
    """The lesioned images' masks and their tumour-class maps (the pointing game's protocol:
    the ground-truth class's evidence, whatever the model predicted)."""
    tumour = TARGET_CLASSES.index(TUMOR)
    return Lesions(
        masks=[lesion_regions["core"][i] for i in lesioned],
        whole_tumour=[lesion_regions["whole_tumour"][i] for i in lesioned],
        images=images[lesioned],
        target_class=tumour,
        maps=explanation_maps(
            model,
            images[lesioned],
            np.full(len(lesioned), tumour),
            layer_name=settings.layer_name,
            method=settings.method,
        ),
    )
