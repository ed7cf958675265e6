"""gradcam_gallery: Grad-CAM overlays of test images, and how far the maps can be trusted."""

import dagster as dg
import numpy as np

from brain_pipeline.core.artifacts import write_json, write_parquet
from brain_pipeline.core.data.lesions import lesion_masks_by_region
from brain_pipeline.core.data.sources import TARGET_CLASSES
from brain_pipeline.core.data.splits import split_rows
from brain_pipeline.core.explain.gallery import explain_test_set, gallery_figures
from brain_pipeline.core.model.leaderboard import model_version_of
from brain_pipeline.core.model.tensors import tensors_for_rows, trained_model_and_splits
from brain_pipeline.defs.ingestion import dataset_splits
from brain_pipeline.defs.resources import CarbonTracker, PipelineStorage
from brain_pipeline.defs.support import ArtifactStep, progress_log
from brain_pipeline.defs.training import TRAINING_CONFIGURATIONS, trained_model


class GalleryConfig(dg.Config):
    images_per_gallery: int = 8
    method: str = "gradcam"
    layer_name: str | None = None
    seed: int = 0


@dg.asset(
    deps=[trained_model, dataset_splits],
    group_name="model",
    code_version="8",
    kinds={"keras"},
    partitions_def=TRAINING_CONFIGURATIONS,
)
def gradcam_gallery(
    context: dg.AssetExecutionContext,
    config: GalleryConfig,
    storage: PipelineStorage,
    carbon: CarbonTracker,
) -> dg.MaterializeResult:
    """Grad-CAM overlays per class, correct and misclassified, with trust scores."""
    step = ArtifactStep(
        context,
        storage,
        config=config.model_dump(),
        upstream=["trained_model", "dataset_splits"],
        carbon=carbon,
    )
    if reused := step.reused():
        return reused
    model_file = step.upstream["trained_model"]
    model, preprocessing, table = trained_model_and_splits(
        model_file.path, step.upstream["dataset_splits"].path
    )
    test = split_rows(table, "test")
    raw, cache = storage.raw_data(), storage.shared_dir("tensor_cache")
    with step.tracked(model_version=model_version_of(model_file.folder)):
        # The cached test tensors (shared with model_evaluation): no decoding again.
        tensors, labels = tensors_for_rows(
            test, raw.roots, preprocessing, cache, progress_log(context)
        )
        images = np.asarray(tensors, dtype=np.float32)
        explained = explain_test_set(
            model,
            images,
            labels,
            # Localisation is scored on the test images with a lesion mask (phantoms only).
            lesion_masks_by_region(raw, test["dataset"], test["path"], preprocessing.image_size),
            per_gallery=config.images_per_gallery,
            method=config.method,
            layer_name=config.layer_name,
            seed=config.seed,
            skull_stripped=preprocessing.skull_strip,
            lesion_class=TARGET_CLASSES.index("tumor_brain"),
        )
    chosen, probabilities, scores = explained.chosen, explained.probabilities, explained.scores
    predicted = probabilities.argmax(axis=1)
    figures = gallery_figures(
        images, explained.heatmaps, chosen, labels, probabilities, TARGET_CLASSES
    )
    galleries = {
        f"gallery_{name}": step.figure(f"{name}.png", figure) for name, figure in figures.items()
    }
    shown = test.iloc[chosen][["sha256", "dataset", "path", "target_class"]].copy()
    shown["predicted_class"] = [TARGET_CLASSES[predicted[i]] for i in chosen]
    write_parquet(step.folder / "explained_images.parquet", shown)
    model_version = model_version_of(model_file.folder)
    path = write_json(
        step.folder / "scores.json",
        {
            **scores,
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
            **galleries,
        }
    )
