"""The asset graph. Each asset decides *when* and *where*; the core decides *what*.

raw/<dataset> -> image_manifest -> balanced_index -> dataset_splits -> trained_model
-> model_evaluation, gradcam_gallery -> emissions_record
"""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from brain_pipeline.core import plots
from brain_pipeline.core.artifacts import read_json, write_json, write_parquet
from brain_pipeline.core.data import dedup, shortcuts, splits
from brain_pipeline.core.data.manifest import build_manifest, manifest_summary
from brain_pipeline.core.data.sources import (
    TARGET_CLASSES,
    DatasetSpec,
    dataset_fingerprint,
)
from brain_pipeline.core.emissions import (
    append_history,
    efficiency_by_model_version,
    track_step,
)
from brain_pipeline.core.imaging.preprocessing import (
    PREPROCESSING_VERSION,
    Preprocessing,
    build_tensor_cache,
    class_indices,
    filesystem_path,
    load_image,
    preprocess_image,
)
from brain_pipeline.core.model import evaluation
from brain_pipeline.core.model.architectures import AugmentationConfig
from brain_pipeline.core.model.training import (
    TrainingConfig,
    predict_probabilities,
    train_classifier,
)
from brain_pipeline.defs.resources import CarbonTracker, PipelineStorage
from brain_pipeline.defs.support import (
    UpstreamArtifact,
    computed,
    figure_metadata,
    input_signature,
    markdown_table,
    previous_result,
    record_provenance,
    reuse_if_unchanged,
    upstream_artifact,
)

# Bump an asset's code version when its logic changes, so Dagster marks it (and what
# depends on it) stale.
CODE_VERSIONS = {
    "image_manifest": "2",
    "balanced_index": "2",
    "dataset_splits": "2",
    "trained_model": "5",
    "model_evaluation": "2",
    "gradcam_gallery": "7",
    "emissions_record": "1",
}


# --------------------------------------------------------------------------- raw sources


def raw_dataset_asset(spec: DatasetSpec) -> dg.SourceAsset:
    """An observable source per dataset; its data version is the files' fingerprint."""

    @dg.observable_source_asset(
        key=["raw", spec.name],
        group_name="raw",
        description=f"Raw image files under {spec.root}",
    )
    def _observe() -> dg.ObserveResult:
        return dg.ObserveResult(
            data_version=dg.DataVersion(dataset_fingerprint(spec.root)),
            metadata={"path": dg.MetadataValue.path(str(spec.root))},
        )

    return _observe


# --------------------------------------------------------------------------- configs


class IndexConfig(dg.Config):
    seed: int = 0
    near_duplicate_cosine: float = dedup.DEFAULT_NEAR_DUPLICATE_COSINE
    balance_classes: bool = True


class SplitConfig(dg.Config):
    salt: str = "brain_pipeline"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # The study's protocol: this many test images per class (test_fraction is then unused).
    test_images_per_class: int | None = None


_TRAINING_DEFAULTS = TrainingConfig()


class TrainingParams(dg.Config):
    """The launchpad's face of core.training.TrainingConfig; the defaults (and the comments
    on them) live there."""

    architecture: str = _TRAINING_DEFAULTS.architecture
    image_size: int = _TRAINING_DEFAULTS.image_size
    skull_strip: bool = _TRAINING_DEFAULTS.skull_strip
    intensity: str = _TRAINING_DEFAULTS.intensity
    epochs: int = _TRAINING_DEFAULTS.epochs
    batch_size: int = _TRAINING_DEFAULTS.batch_size
    learning_rate: float = _TRAINING_DEFAULTS.learning_rate
    early_stopping_patience: int = _TRAINING_DEFAULTS.early_stopping_patience
    reduce_lr_patience: int = _TRAINING_DEFAULTS.reduce_lr_patience
    warmup_epochs: int = _TRAINING_DEFAULTS.warmup_epochs
    class_weights: bool = _TRAINING_DEFAULTS.class_weights
    precise_bn_batches: int = _TRAINING_DEFAULTS.precise_bn_batches
    augment: bool = True
    seed: int = _TRAINING_DEFAULTS.seed

    def to_core(self) -> TrainingConfig:
        augmentation = (
            AugmentationConfig()
            if self.augment
            else AugmentationConfig(flip=False, rotation=0, zoom=0, contrast=0, brightness=0)
        )
        return TrainingConfig(
            architecture=self.architecture,
            image_size=self.image_size,
            skull_strip=self.skull_strip,
            intensity=self.intensity,
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            early_stopping_patience=self.early_stopping_patience,
            reduce_lr_patience=self.reduce_lr_patience,
            warmup_epochs=self.warmup_epochs,
            class_weights=self.class_weights,
            precise_bn_batches=self.precise_bn_batches,
            seed=self.seed,
            augmentation=augmentation,
        )


class GalleryConfig(dg.Config):
    images_per_gallery: int = 8
    method: str = "gradcam"
    layer_name: str | None = None
    seed: int = 0


# --------------------------------------------------------------------------- helpers


def _split_tensors(
    context: dg.AssetExecutionContext,
    storage: PipelineStorage,
    frame: pd.DataFrame,
    preprocessing: Preprocessing,
) -> tuple[np.ndarray, np.ndarray]:
    """Cached model-ready tensors and class indices for some rows of the split table."""
    roots = storage.raw_data().roots
    files = [
        filesystem_path(roots[d], p) for d, p in zip(frame["dataset"], frame["path"], strict=True)
    ]
    tensors = build_tensor_cache(
        files,
        list(frame["sha256"]),
        preprocessing,
        storage.shared_dir("tensor_cache"),
        progress=lambda done, total: context.log.info(f"preprocessed {done}/{total} images"),
    )
    return tensors, class_indices(list(frame["target_class"]), TARGET_CLASSES)


def _sample_grid(
    storage: PipelineStorage, frame: pd.DataFrame, seed: int, by: str, per_group: int = 6
):
    """A row of preprocessed samples for each value of `by` (class, or source dataset)."""
    roots = storage.raw_data().roots
    images, titles = [], []
    for _, members in frame.groupby(by, sort=True):
        for _, row in members.sample(n=min(per_group, len(members)), random_state=seed).iterrows():
            image = load_image(filesystem_path(roots[row["dataset"]], row["path"]))
            images.append(preprocess_image(image, Preprocessing(96)))
            titles.append(f"{row['target_class']}\n{row['dataset']}")
        images.extend(
            [np.zeros((96, 96, 1), np.float32)] * (per_group - min(per_group, len(members)))
        )
        titles.extend([""] * (per_group - min(per_group, len(members))))
    return plots.image_grid(
        images, titles, columns=per_group, title=f"Samples per {by}, as the model sees them"
    )


def _counts_by_stage(manifest: pd.DataFrame, index: pd.DataFrame, unique_counts: dict):
    """Images per dataset and class: usable files, unique contents, after balancing."""
    usable = manifest[(manifest["status"] == "ok") & manifest["target_class"].notna()]
    table = (
        pd.DataFrame(
            {
                "files": usable.groupby(["dataset", "target_class"]).size(),
                "after balancing": index.groupby(["dataset", "target_class"]).size(),
            }
        )
        .fillna(0)
        .astype(int)
    )
    overall = (
        pd.DataFrame(
            {
                "files": usable["target_class"].value_counts(),
                "unique": pd.Series(unique_counts),
                "after balancing": index["target_class"].value_counts(),
            }
        )
        .fillna(0)
        .astype(int)
    )
    return table, overall


def _emissions_metadata(record: dict) -> dict:
    if not record.get("measured"):
        return {"energy_kwh": "not measured", "energy_note": record.get("not_measured_reason", "")}
    return {
        "energy_kwh": dg.MetadataValue.float(record["energy_kwh"]),
        "emissions_kg_co2eq": dg.MetadataValue.float(record["emissions_kg"]),
        "power_measurement": record["measurement_mode"],
    }


# --------------------------------------------------------------------------- assets


def build_assets(raw_keys: list[dg.AssetKey]) -> list[dg.AssetsDefinition]:
    @dg.asset(
        deps=raw_keys,
        group_name="data",
        code_version=CODE_VERSIONS["image_manifest"],
        kinds={"pandas", "parquet"},
    )
    def image_manifest(
        context: dg.AssetExecutionContext, storage: PipelineStorage, carbon: CarbonTracker
    ) -> dg.MaterializeResult:
        """Every file in every raw dataset: hash, class, format, size, status and reason."""
        raw = storage.raw_data()
        # Fingerprint the files now rather than trust the last observation, which a run that
        # does not observe the sources (materializing this asset alone) would leave stale.
        # It is the same fingerprint the raw/<dataset> sources report as their data version.
        fingerprints = {f"raw/{spec.name}": dataset_fingerprint(spec.root) for spec in raw.datasets}
        signature = input_signature(
            context,
            config={
                "data_dir": str(raw.data_dir),
                "class_maps": {
                    spec.name: dict(sorted(spec.class_map.items())) for spec in raw.datasets
                },
            },
            upstream_versions=fingerprints,
        )
        if cached := reuse_if_unchanged(context, signature, storage.reuse_unchanged):
            return cached
        previous = _previous_manifest(context)
        folder = storage.run_dir("image_manifest", context.run_id)
        with track_step(carbon.settings(), asset_key="image_manifest", run_id=context.run_id) as m:
            manifest, decoded = build_manifest(
                raw.datasets,
                previous,
                progress=lambda done, total: context.log.info(f"decoded {done}/{total} files"),
            )
        path = write_parquet(folder / "manifest.parquet", manifest)
        write_json(folder / "emissions.json", m.record)
        summary = manifest_summary(manifest)
        write_json(folder / "summary.json", summary)
        record_provenance(
            context,
            folder,
            config={"data_dir": str(raw.data_dir)},
            extra={"raw_data_versions": fingerprints},
        )
        counts = pd.crosstab(manifest["dataset"], manifest["target_class"].fillna("(unmapped)"))
        sizes = manifest.dropna(subset=["width"]).assign(
            size=lambda f: f["width"].astype(str) + "x" + f["height"].astype(str)
        )
        size_table = sizes.groupby(["dataset", "format", "mode"]).agg(
            images=("sha256", "size"), distinct_sizes=("size", "nunique")
        )
        return computed(
            signature,
            {
                "path": dg.MetadataValue.path(str(path)),
                "n_files": summary["n_files"],
                "n_ok": summary["n_ok"],
                "n_rejected": summary["n_rejected"],
                "n_skipped": summary["n_skipped"],
                "n_unmapped": summary["n_unmapped"],
                "files_decoded_this_run": decoded,
                "rejects_by_reason": dg.MetadataValue.json(summary["rejects_by_reason"]),
                "class_counts_per_dataset": markdown_table(counts),
                "formats_and_modes": markdown_table(size_table),
                "image_sizes": figure_metadata(
                    folder, "image_sizes.png", plots.image_sizes_plot(manifest)
                ),
                "class_distribution": figure_metadata(
                    folder,
                    "class_distribution.png",
                    plots.class_distribution(counts, "Files per dataset and class (raw)"),
                ),
                **_emissions_metadata(m.record),
            },
        )

    @dg.asset(
        deps=[image_manifest],
        group_name="data",
        code_version=CODE_VERSIONS["balanced_index"],
        kinds={"pandas", "parquet"},
    )
    def balanced_index(
        context: dg.AssetExecutionContext, config: IndexConfig, storage: PipelineStorage
    ) -> dg.MaterializeResult:
        """Unique contents, near-duplicate groups (`group_id`), classes balanced by downsampling."""
        manifest_artifact = upstream_artifact(context, "image_manifest")
        signature = input_signature(
            context, config=config.model_dump(), upstream=[manifest_artifact]
        )
        if cached := reuse_if_unchanged(context, signature, storage.reuse_unchanged):
            return cached
        manifest = pd.read_parquet(manifest_artifact.path)
        index, conflicts, report = dedup.build_balanced_index(
            manifest,
            seed=config.seed,
            near_duplicate_cosine=config.near_duplicate_cosine,
            balance=config.balance_classes,
        )
        folder = storage.run_dir("balanced_index", context.run_id)
        path = write_parquet(folder / "index.parquet", index)
        write_parquet(folder / "label_conflicts.parquet", conflicts)
        write_json(folder / "report.json", report.__dict__)
        # The shortcut audit of the raw files, read by the shortcut_audit_raw_files check.
        audited = index.merge(_thumbnails(manifest), on="sha256")
        raw_probe = shortcuts.probe_accuracy(
            shortcuts.raw_file_statistics(audited), audited["target_class"], audited["group_id"]
        )
        write_json(folder / "shortcut_audit.json", raw_probe.as_dict())
        record_provenance(context, folder, config=config.model_dump(), upstream=[manifest_artifact])
        per_dataset, overall = _counts_by_stage(manifest, index, report.counts_before_balancing)
        largest = (
            index.groupby("group_id")
            .agg(
                size=("sha256", "size"),
                target_class=("target_class", "first"),
                example=("path", "first"),
                dataset=("dataset", "first"),
            )
            .sort_values("size", ascending=False)
            .head(5)
        )
        return computed(
            signature,
            {
                "path": dg.MetadataValue.path(str(path)),
                "n_rows": len(index),
                "n_unique_contents": report.n_unique_contents,
                "n_exact_duplicate_files": report.n_exact_duplicate_files,
                "n_label_conflicts": report.n_conflicting_contents,
                "n_near_duplicate_groups": report.n_near_duplicate_groups,
                "largest_group_size": report.largest_group_size,
                "group_size_distribution": dg.MetadataValue.json(report.group_size_distribution),
                "largest_groups": markdown_table(largest),
                "class_counts": markdown_table(overall),
                "class_counts_per_dataset": markdown_table(per_dataset),
                "class_balance": figure_metadata(
                    folder,
                    "class_balance.png",
                    plots.class_distribution(
                        overall.T, "Images per class: files, unique contents, after balancing"
                    ),
                ),
                "samples_per_class": figure_metadata(
                    folder,
                    "samples_per_class.png",
                    _sample_grid(storage, index, config.seed, by="target_class"),
                ),
                "samples_per_source": figure_metadata(
                    folder,
                    "samples_per_source.png",
                    _sample_grid(storage, index, config.seed, by="dataset"),
                ),
            },
        )

    @dg.asset(
        deps=[balanced_index],
        group_name="data",
        code_version=CODE_VERSIONS["dataset_splits"],
        kinds={"pandas", "parquet"},
    )
    def dataset_splits(
        context: dg.AssetExecutionContext, config: SplitConfig, storage: PipelineStorage
    ) -> dg.MaterializeResult:
        """Train / val / test by near-duplicate group: stable, stratified, leakage-free."""
        index_artifact = upstream_artifact(context, "balanced_index")
        signature = input_signature(context, config=config.model_dump(), upstream=[index_artifact])
        if cached := reuse_if_unchanged(context, signature, storage.reuse_unchanged):
            return cached
        index = pd.read_parquet(index_artifact.path)
        if config.test_images_per_class:
            table = splits.assign_fixed_test_count(
                index,
                salt=config.salt,
                test_per_class=config.test_images_per_class,
                val_fraction=config.val_fraction,
            )
        else:
            table = splits.assign_splits(
                index,
                salt=config.salt,
                val_fraction=config.val_fraction,
                test_fraction=config.test_fraction,
            )
        # Yesterday's test set stays the test set: inherit assignments made under this config.
        previous = _previous_splits(context, config)
        table, changes = splits.keep_previous_assignment(
            table, None if previous is None else pd.read_parquet(previous.path)
        )
        if changes.moved_images:
            context.log.warning(
                f"{len(changes.moved_images)} images moved split: new images joined groups "
                "from different splits (see moved_images.json)"
            )
        folder = storage.run_dir("dataset_splits", context.run_id)
        path = write_parquet(folder / "splits.parquet", table)
        write_json(folder / "moved_images.json", changes.moved_images)
        # The previous splits are an input too: existing images keep their split from them.
        record_provenance(
            context,
            folder,
            config=config.model_dump(),
            upstream=[index_artifact, *([previous] if previous else [])],
        )
        counts = splits.split_class_counts(table)
        leakage = splits.leakage_report(table)
        return computed(
            signature,
            {
                "path": dg.MetadataValue.path(str(path)),
                **{f"n_{name}": int((table["split"] == name).sum()) for name in splits.SPLITS},
                "split_class_counts": markdown_table(counts),
                **leakage,
                "groups_kept_from_previous_splits": changes.inherited_groups,
                "bridging_groups": changes.bridging_groups,
                "moved_images": len(changes.moved_images),
                "split_config": dg.MetadataValue.json(config.model_dump()),
                "split_distribution": figure_metadata(
                    folder,
                    "split_distribution.png",
                    plots.class_distribution(counts, "Images per split and class"),
                ),
            },
        )

    @dg.asset(
        deps=[dataset_splits],
        group_name="model",
        code_version=CODE_VERSIONS["trained_model"],
        kinds={"keras", "tensorflow"},
    )
    def trained_model(
        context: dg.AssetExecutionContext,
        config: TrainingParams,
        storage: PipelineStorage,
        carbon: CarbonTracker,
    ) -> dg.MaterializeResult:
        """A Keras CNN trained on the train split, early-stopped on the val split."""
        splits_artifact = upstream_artifact(context, "dataset_splits")
        # The preprocessing code's version too: a change there changes every input tensor.
        signature = input_signature(
            context,
            config={**config.model_dump(), "preprocessing_version": PREPROCESSING_VERSION},
            upstream=[splits_artifact],
        )
        if cached := reuse_if_unchanged(context, signature, storage.reuse_unchanged):
            return cached
        table = pd.read_parquet(splits_artifact.path)
        core_config = config.to_core()
        preprocessing = core_config.preprocessing
        folder = storage.run_dir("trained_model", context.run_id)
        model_version = folder.name
        with track_step(
            carbon.settings(),
            asset_key="trained_model",
            run_id=context.run_id,
            model_version=model_version,
        ) as m:
            # Preprocessing (on a cold cache) is part of the step's energy too.
            train_x, train_y = _split_tensors(
                context, storage, table[table["split"] == "train"], preprocessing
            )
            val_x, val_y = _split_tensors(
                context, storage, table[table["split"] == "val"], preprocessing
            )
            result = train_classifier(
                train_x,
                train_y,
                val_x,
                val_y,
                core_config,
                class_names=TARGET_CLASSES,
                # Keyed by the inputs, so re-running a killed materialization resumes it.
                resume_dir=storage.shared_dir("training_checkpoints") / signature,
                log=context.log.info,
            )
        path = folder / "model.keras"
        with _atomic_model_path(path) as tmp:
            result.model.save(tmp)
        preprocessing.save(folder)
        write_json(folder / "history.json", result.history)
        write_json(folder / "emissions.json", m.record)
        write_json(
            folder / "training.json",
            {
                "config": core_config.as_dict(),
                "class_names": list(TARGET_CLASSES),
                "model_version": model_version,
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "resumed_from_epoch": result.resumed_from_epoch,
                "train_seconds": result.train_seconds,
                "n_train": int(len(train_y)),
                "n_val": int(len(val_y)),
            },
        )
        record_provenance(context, folder, config=config.model_dump(), upstream=[splits_artifact])
        best = result.best_epoch - 1  # the history covers every epoch, resumed ones too
        return computed(
            signature,
            {
                "path": dg.MetadataValue.path(str(path)),
                "model_version": model_version,
                "architecture": config.architecture,
                "parameters": int(result.model.count_params()),
                "image_size": config.image_size,
                "epochs_run": result.epochs_run,
                "best_epoch": result.best_epoch,
                "resumed_from_epoch": result.resumed_from_epoch,
                "val_accuracy": float(result.history["val_accuracy"][best]),
                "val_loss": float(result.history["val_loss"][best]),
                "train_seconds": round(result.train_seconds, 1),
                "learning_curves": figure_metadata(
                    folder,
                    "learning_curves.png",
                    plots.learning_curves(result.history, result.best_epoch),
                ),
                **_emissions_metadata(m.record),
            },
        )

    @dg.asset(
        deps=[trained_model, dataset_splits, image_manifest],
        group_name="model",
        code_version=CODE_VERSIONS["model_evaluation"],
        kinds={"scikitlearn"},
    )
    def model_evaluation(
        context: dg.AssetExecutionContext, storage: PipelineStorage, carbon: CarbonTracker
    ) -> dg.MaterializeResult:
        """Test-split metrics: accuracy, F1, report, confusion matrix, ROC-AUC, calibration."""
        import keras

        model_artifact = upstream_artifact(context, "trained_model")
        splits_artifact = upstream_artifact(context, "dataset_splits")
        manifest_artifact = upstream_artifact(context, "image_manifest")
        upstream = [model_artifact, splits_artifact, manifest_artifact]
        signature = input_signature(context, config={}, upstream=upstream)
        if cached := reuse_if_unchanged(context, signature, storage.reuse_unchanged):
            return cached
        model = keras.models.load_model(model_artifact.path)
        table = pd.read_parquet(splits_artifact.path)
        test = table[table["split"] == "test"].reset_index(drop=True)
        preprocessing = Preprocessing.for_model(model_artifact.path, int(model.input_shape[1]))
        model_version = model_artifact.folder.name
        with track_step(
            carbon.settings(),
            asset_key="model_evaluation",
            run_id=context.run_id,
            model_version=model_version,
        ) as m:
            tensors, labels = _split_tensors(context, storage, test, preprocessing)
            probabilities = predict_probabilities(model, tensors)
            metrics = evaluation.classification_metrics(labels, probabilities, TARGET_CLASSES)
            metrics["per_dataset"] = evaluation.metrics_by_group(
                labels, probabilities, list(test["dataset"]), TARGET_CLASSES
            )
            metrics["within_source_healthy_vs_alzheimer"] = (
                evaluation.within_source_healthy_vs_alzheimer(
                    test["source_label"], test["target_class"], probabilities, TARGET_CLASSES
                )
            )
            metrics["shortcut_audit"] = _shortcut_audit(
                context, storage, table, manifest_artifact.path, preprocessing, metrics["accuracy"]
            )
        metrics["model_version"] = model_version
        folder = storage.run_dir("model_evaluation", context.run_id)
        path = write_json(folder / "metrics.json", metrics)
        predictions = test[["sha256", "dataset", "path", "target_class", "group_id"]].copy()
        predictions["predicted_class"] = [TARGET_CLASSES[i] for i in probabilities.argmax(1)]
        for position, name in enumerate(TARGET_CLASSES):
            predictions[f"p_{name}"] = probabilities[:, position]
        write_parquet(folder / "predictions.parquet", predictions)
        write_json(folder / "emissions.json", m.record)
        record_provenance(context, folder, config={}, upstream=upstream)
        report = pd.DataFrame(metrics["classification_report"]).T.round(3)
        audit = metrics["shortcut_audit"]
        return computed(
            signature,
            {
                "path": dg.MetadataValue.path(str(path)),
                "model_version": model_version,
                "n_test_images": metrics["n_images"],
                "accuracy": metrics["accuracy"],
                "f1_macro": metrics["f1_macro"],
                "f1_weighted": metrics["f1_weighted"],
                "roc_auc_macro": metrics["roc_auc_macro"],
                "expected_calibration_error": metrics["expected_calibration_error"],
                "within_source_healthy_vs_alzheimer_acc": metrics[
                    "within_source_healthy_vs_alzheimer"
                ]["accuracy"],
                "classification_report": markdown_table(report),
                "per_dataset": markdown_table(pd.DataFrame(metrics["per_dataset"]).T.round(3)),
                "raw_file_probe_accuracy": audit["raw_files"]["accuracy"],
                "tensor_probe_accuracy": audit["model_inputs"]["accuracy"],
                "margin_over_raw_file_probe": audit["held_out"]["margin_over_raw_file_probe"],
                "margin_over_tensor_probe": audit["held_out"]["margin_over_tensor_probe"],
                "shortcut_audit": dg.MetadataValue.json(audit),
                "confusion_matrix": figure_metadata(
                    folder,
                    "confusion_matrix.png",
                    plots.confusion_matrix_plot(metrics["confusion_matrix"], TARGET_CLASSES),
                ),
                "roc_curves": figure_metadata(
                    folder,
                    "roc_curves.png",
                    plots.roc_curves_plot(metrics["roc_curves"], metrics["roc_auc_ovr"]),
                ),
                "reliability": figure_metadata(
                    folder,
                    "reliability.png",
                    plots.reliability_diagram(
                        metrics["reliability_bins"], metrics["expected_calibration_error"]
                    ),
                ),
                **_emissions_metadata(m.record),
            },
        )

    @dg.asset(
        deps=[trained_model, dataset_splits],
        group_name="model",
        code_version=CODE_VERSIONS["gradcam_gallery"],
        kinds={"keras"},
    )
    def gradcam_gallery(
        context: dg.AssetExecutionContext,
        config: GalleryConfig,
        storage: PipelineStorage,
        carbon: CarbonTracker,
    ) -> dg.MaterializeResult:
        """Grad-CAM overlays per class, correct and misclassified, with trust scores."""
        import keras

        from brain_pipeline.core.explain import gradcam
        from brain_pipeline.core.phantoms import lesion_masks_by_region

        model_artifact = upstream_artifact(context, "trained_model")
        splits_artifact = upstream_artifact(context, "dataset_splits")
        signature = input_signature(
            context, config=config.model_dump(), upstream=[model_artifact, splits_artifact]
        )
        if cached := reuse_if_unchanged(context, signature, storage.reuse_unchanged):
            return cached
        model = keras.models.load_model(model_artifact.path)
        table = pd.read_parquet(splits_artifact.path)
        test = table[table["split"] == "test"].reset_index(drop=True)
        preprocessing = Preprocessing.for_model(model_artifact.path, int(model.input_shape[1]))
        image_size = preprocessing.image_size
        model_version = model_artifact.folder.name
        folder = storage.run_dir("gradcam_gallery", context.run_id)
        raw = storage.raw_data()
        with track_step(
            carbon.settings(),
            asset_key="gradcam_gallery",
            run_id=context.run_id,
            model_version=model_version,
        ) as m:
            # The cached test tensors (shared with model_evaluation): no decoding again.
            tensors, labels = _split_tensors(context, storage, test, preprocessing)
            images = np.asarray(tensors, dtype=np.float32)
            probabilities = predict_probabilities(model, images)
            predicted = probabilities.argmax(axis=1)
            chosen = _gallery_selection(labels, predicted, config.images_per_gallery, config.seed)
            # Localisation is scored on every test image with a lesion mask (phantoms only).
            regions = lesion_masks_by_region(raw, test["dataset"], test["path"], image_size)
            masks, whole_tumour = regions["core"], regions["whole_tumour"]
            lesioned = [i for i, mask in enumerate(masks) if mask is not None]
            heatmaps = gradcam.gradcam(
                model,
                images[chosen],
                predicted[chosen],
                layer_name=config.layer_name,
                method=config.method,
            )
            scores = gradcam.score_explanations(
                model,
                images[chosen],
                heatmaps,
                predicted[chosen],
                lesion_images=images[lesioned],
                lesion_masks=[masks[i] for i in lesioned],
                whole_tumour_masks=[whole_tumour[i] for i in lesioned],
                lesion_class=TARGET_CLASSES.index("tumor_brain"),
                seed=config.seed,
                method=config.method,
                layer_name=config.layer_name,
                skull_stripped=preprocessing.skull_strip,
            )
        metadata: dict = {}
        gallery_files = []
        position_of = {image_index: k for k, image_index in enumerate(chosen)}
        for class_index, name in enumerate(TARGET_CLASSES):
            for outcome in ("correct", "misclassified"):
                members = [
                    i
                    for i in chosen
                    if labels[i] == class_index
                    and (predicted[i] == labels[i]) == (outcome == "correct")
                ]
                titles = [
                    f"true: {TARGET_CLASSES[labels[i]]}\npred: {TARGET_CLASSES[predicted[i]]}"
                    f" ({probabilities[i, predicted[i]]:.2f})"
                    for i in members
                ]
                figure = gradcam.render_gallery(
                    images[members] if members else np.zeros((0, image_size, image_size, 1)),
                    heatmaps[[position_of[i] for i in members]]
                    if members
                    else np.zeros((0, image_size, image_size)),
                    titles,
                    suptitle=f"{name}: {outcome} ({len(members)})",
                )
                file_name = f"{name}_{outcome}.png"
                metadata[f"gallery_{name}_{outcome}"] = figure_metadata(folder, file_name, figure)
                gallery_files.append(file_name)
        explained = test.iloc[chosen][["sha256", "dataset", "path", "target_class"]].copy()
        explained["predicted_class"] = [TARGET_CLASSES[predicted[i]] for i in chosen]
        write_parquet(folder / "explained_images.parquet", explained)
        score_dict = scores.as_dict()
        path = write_json(
            folder / "scores.json",
            {
                **score_dict,
                "method": config.method,
                "model_version": model_version,
                "galleries": gallery_files,
            },
        )
        write_json(folder / "emissions.json", m.record)
        record_provenance(
            context, folder, config=config.model_dump(), upstream=[model_artifact, splits_artifact]
        )
        return computed(
            signature,
            {
                "path": dg.MetadataValue.path(str(path)),
                "model_version": model_version,
                "method": config.method,
                **{k: v for k, v in score_dict.items() if v is not None},
                **metadata,
                **_emissions_metadata(m.record),
            },
        )

    @dg.asset(
        deps=[image_manifest, trained_model, model_evaluation, gradcam_gallery],
        group_name="model",
        code_version=CODE_VERSIONS["emissions_record"],
        kinds={"parquet"},
    )
    def emissions_record(
        context: dg.AssetExecutionContext, storage: PipelineStorage
    ) -> dg.MaterializeResult:
        """Energy and CO2 of every tracked step, and quality per kWh across model versions."""
        steps = [
            upstream_artifact(context, key)
            for key in ("image_manifest", "trained_model", "model_evaluation", "gradcam_gallery")
        ]
        signature = input_signature(context, config={}, upstream=steps)
        if cached := reuse_if_unchanged(context, signature, storage.reuse_unchanged):
            return cached
        records = [read_json(step.folder / "emissions.json") for step in steps]
        history_dir = storage.shared_dir("emissions_history")
        history = append_history(history_dir / "steps.parquet", records)
        evaluation_artifact = steps[2]
        metrics = read_json(evaluation_artifact.path)
        versions = _append_model_version(history_dir / "model_versions.parquet", metrics)
        table = efficiency_by_model_version(history, versions)
        folder = storage.run_dir("emissions_record", context.run_id)
        path = write_parquet(folder / "emissions_history.parquet", history)
        write_parquet(folder / "efficiency.parquet", table)
        record_provenance(context, folder, config={}, upstream=steps)
        this_run = pd.DataFrame(records)[
            ["asset_key", "duration_s", "energy_kwh", "emissions_kg", "measurement_mode"]
        ]
        latest = table.iloc[-1]
        return computed(
            signature,
            {
                "path": dg.MetadataValue.path(str(path)),
                "n_records": len(history),
                "n_model_versions": len(table),
                "steps_this_chain": markdown_table(this_run.set_index("asset_key")),
                "totals_per_asset": markdown_table(
                    history.groupby("asset_key")[["energy_kwh", "emissions_kg", "duration_s"]].sum()
                ),
                "efficiency_by_model_version": markdown_table(
                    table[
                        [
                            "model_version",
                            "accuracy",
                            "f1_macro",
                            "energy_kwh",
                            "emissions_kg",
                            "cumulative_kwh",
                            "accuracy_per_kwh",
                            "gain_per_gram_co2",
                        ]
                    ].set_index("model_version")
                ),
                "test_accuracy_per_kwh": _finite_or_text(latest["accuracy_per_kwh"]),
                "efficiency": figure_metadata(
                    folder, "efficiency.png", plots.efficiency_plot(table)
                ),
            },
        )

    return [
        image_manifest,
        balanced_index,
        dataset_splits,
        trained_model,
        model_evaluation,
        gradcam_gallery,
        emissions_record,
    ]


# --------------------------------------------------------------------------- asset helpers


def _previous_splits(
    context: dg.AssetExecutionContext, config: SplitConfig
) -> UpstreamArtifact | None:
    """The current splits artifact, if it was made with the same split config."""
    previous = previous_result(context)
    if previous is None or "split_config" not in previous.metadata:
        return None
    if previous.metadata["split_config"].value != config.model_dump():
        return None
    return UpstreamArtifact("dataset_splits", previous.path, previous.run_id, previous.data_version)


def _previous_manifest(context: dg.AssetExecutionContext) -> pd.DataFrame | None:
    """The last manifest, so unchanged files are not decoded again."""
    previous = previous_result(context)
    return pd.read_parquet(previous.path) if previous else None


class _atomic_model_path:
    """Keras picks the format from the suffix, so the temp name must end in .keras."""

    def __init__(self, destination: Path) -> None:
        self.destination = destination
        self.tmp = destination.with_name(f".{destination.stem}.partial.keras")

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.tmp.replace(self.destination)
        else:
            self.tmp.unlink(missing_ok=True)


def _thumbnails(manifest: pd.DataFrame) -> pd.DataFrame:
    """sha256 -> thumbnail of every readable content (one row per content)."""
    readable = manifest[manifest["status"] == "ok"]
    return readable[["sha256", "thumbnail"]].drop_duplicates("sha256")


def _shortcut_audit(
    context: dg.AssetExecutionContext,
    storage: PipelineStorage,
    table: pd.DataFrame,
    manifest_path: Path,
    preprocessing: Preprocessing,
    model_test_accuracy: float,
) -> dict:
    """Trivial-statistics probes on raw files and model inputs, and the model's margin."""
    manifest = pd.read_parquet(manifest_path, columns=["sha256", "status", "thumbnail"])
    rows = table.merge(_thumbnails(manifest), on="sha256")
    raw_features = shortcuts.raw_file_statistics(rows)
    tensor_parts = []
    for name in splits.SPLITS:
        part = rows[rows["split"] == name]
        tensors, _ = _split_tensors(context, storage, part, preprocessing)
        tensor_parts.append(shortcuts.tensor_statistics(tensors).set_index(part.index))
    tensor_features = pd.concat(tensor_parts).loc[rows.index]
    labels, groups = rows["target_class"].to_numpy(), rows["group_id"].to_numpy()
    raw = shortcuts.probe_accuracy(raw_features, labels, groups)
    tensor = shortcuts.probe_accuracy(tensor_features, labels, groups)
    train, test = (rows["split"] == "train").to_numpy(), (rows["split"] == "test").to_numpy()
    raw_test = shortcuts.held_out_probe_accuracy(
        raw_features[train], labels[train], raw_features[test], labels[test]
    )
    tensor_test = shortcuts.held_out_probe_accuracy(
        tensor_features[train], labels[train], tensor_features[test], labels[test]
    )
    return {
        "raw_files": raw.as_dict(),
        "model_inputs": tensor.as_dict(),
        "held_out": {
            "raw_file_probe_test_accuracy": raw_test,
            "tensor_probe_test_accuracy": tensor_test,
            "margin_over_raw_file_probe": model_test_accuracy - raw_test,
            "margin_over_tensor_probe": model_test_accuracy - tensor_test,
        },
    }


def _gallery_selection(labels: np.ndarray, predicted: np.ndarray, per_gallery: int, seed: int):
    """Up to `per_gallery` correct and misclassified test images per class, seeded."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for class_index in np.unique(labels):
        for correct in (True, False):
            pool = np.flatnonzero((labels == class_index) & ((predicted == labels) == correct))
            take = rng.permutation(pool)[:per_gallery]
            chosen.extend(sorted(int(i) for i in take))
    return np.array(chosen, dtype=np.int64)


def _append_model_version(path: Path, metrics: dict) -> pd.DataFrame:
    row = pd.DataFrame(
        [
            {
                "model_version": metrics["model_version"],
                "trained_at": metrics["model_version"].split("_")[0],
                "accuracy": metrics["accuracy"],
                "f1_macro": metrics["f1_macro"],
            }
        ]
    )
    previous = pd.read_parquet(path) if path.exists() else row.iloc[0:0]
    combined = pd.concat([previous, row]).drop_duplicates("model_version", keep="last")
    write_parquet(path, combined)
    return combined


def _finite_or_text(value) -> float | str:
    return float(value) if pd.notna(value) and np.isfinite(value) else "not measured"
