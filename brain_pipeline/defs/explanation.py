"""gradcam_gallery: Grad-CAM overlays of test images, and how far the maps can be trusted."""

import dagster as dg
import numpy as np
import pandas as pd

from brain_pipeline.core import artifact_names
from brain_pipeline.core.artifacts import write_json, write_parquet
from brain_pipeline.core.classes import TARGET_CLASSES
from brain_pipeline.core.data import subjects
from brain_pipeline.core.data.lesions import lesion_masks_by_region, original_with_mask
from brain_pipeline.core.explain.gallery import (
    GallerySettings,
    PatientLesions,
    explain_test_set,
    gallery_figures,
    lesion_figures,
)
from brain_pipeline.defs.ingestion import dataset_splits
from brain_pipeline.defs.model_inputs import ModelInputs
from brain_pipeline.defs.resources import CarbonTracker, PipelineStorage
from brain_pipeline.defs.support import ArtifactStep
from brain_pipeline.defs.training import trained_model

_GALLERY = GallerySettings()


class GalleryConfig(dg.Config):
    """The launchpad's face of core.explain.gallery.GallerySettings."""

    images_per_gallery: int = _GALLERY.images_per_gallery
    method: str = _GALLERY.method
    layer_name: str | None = _GALLERY.layer_name
    seed: int = _GALLERY.seed

    def to_core(self) -> GallerySettings:
        return GallerySettings(**self.model_dump())


@dg.asset(
    deps=[trained_model, dataset_splits],
    group_name="model",
    code_version="10",
    kinds={"keras"},
)
def gradcam_gallery(
    context: dg.AssetExecutionContext,
    config: GalleryConfig,
    storage: PipelineStorage,
    carbon: CarbonTracker,
) -> dg.MaterializeResult:
    """Grad-CAM overlays per class, correct and misclassified, with trust scores."""
    step = ArtifactStep(context, storage, config=config.model_dump(), carbon=carbon)
    if reused := step.reused():
        return reused
    inputs = ModelInputs(step)
    test, preprocessing = inputs.rows("test"), inputs.preprocessing
    with step.tracked(model_version=inputs.version):
        # The cached test tensors (shared with model_evaluation): no decoding again.
        tensors, labels = inputs.tensors(test)
        images = np.asarray(tensors, dtype=np.float32)
        explained = explain_test_set(
            inputs.model,
            images,
            labels,
            # Localisation is scored on the test images with a lesion mask.
            lesion_masks_by_region(inputs.raw, test, preprocessing.image_size),
            config.to_core(),
            skull_stripped=preprocessing.skull_strip,
            patients=_patient_lesions(inputs, test),
        )
    chosen, probabilities, scores = explained.chosen, explained.probabilities, explained.scores
    predicted = probabilities.argmax(axis=1)

    # The maps are drawn on the test images as read, at their own resolution.
    def load_original(i: int):
        return original_with_mask(inputs.raw, test.iloc[i])

    figures = gallery_figures(
        images,
        explained.heatmaps,
        chosen,
        labels,
        probabilities,
        TARGET_CLASSES,
        load_original,
        config.method,
    )
    datasets = test["dataset"].tolist()
    figures |= lesion_figures(explained, images, datasets, 8, load_original, config.method)
    galleries = {
        f"gallery_{name}": step.figure(f"{name}.png", figure) for name, figure in figures.items()
    }
    shown = test.iloc[chosen][["sha256", "dataset", "path", "target_class"]].copy()
    shown["predicted_class"] = [TARGET_CLASSES[predicted[i]] for i in chosen]
    write_parquet(step.folder / artifact_names.EXPLAINED_IMAGES, shown)
    model_version = inputs.version
    path = write_json(
        step.folder / artifact_names.SCORES,
        {
            **scores,
            "localisation_by_dataset": explained.localisation_by_dataset,
            "method": config.method,
            "model_version": model_version,
            "galleries": [f"{name}.png" for name in figures],
        },
    )
    return step.result(
        {
            "path": dg.MetadataValue.path(str(path)),
            "model_version": model_version,
            "method": config.method,
            **{key: value for key, value in scores.items() if value is not None},
            **_by_dataset_metadata(explained.localisation_by_dataset),
            **galleries,
        }
    )


def _patient_lesions(inputs: ModelInputs, test: pd.DataFrame) -> PatientLesions:
    """The test images' datasets and patients, and the training images with a lesion mask
    (on whose maps the Dice threshold is chosen)."""
    train = inputs.rows("train")
    masked = train[train["lesion_mask"].notna()].reset_index(drop=True)
    tensors, _ = inputs.tensors(masked, log_progress=False)
    size = inputs.preprocessing.image_size
    regions = lesion_masks_by_region(inputs.raw, masked, size, ("whole_tumour",))
    return PatientLesions(
        owners=subjects.patients_of(test),
        train_images=np.asarray(tensors, dtype=np.float32),
        train_masks=regions["whole_tumour"],
    )


def _by_dataset_metadata(by_dataset: dict) -> dict:
    """Per dataset with lesion masks: its localisation figures, as JSON metadata."""
    return {"localisation_by_dataset": dg.MetadataValue.json(by_dataset)} if by_dataset else {}
