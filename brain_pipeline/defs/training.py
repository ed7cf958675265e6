"""trained_model: a Keras CNN trained on the train split, early-stopped on the val split."""

import dagster as dg
import pandas as pd

from brain_pipeline.core import plots
from brain_pipeline.core.artifacts import atomic_path, write_json
from brain_pipeline.core.data.sources import TARGET_CLASSES
from brain_pipeline.core.imaging.preprocessing import PREPROCESSING_VERSION
from brain_pipeline.core.model.architectures import AugmentationConfig
from brain_pipeline.core.model.tensors import tensors_for_rows
from brain_pipeline.core.model.training import TrainingConfig, train_classifier
from brain_pipeline.defs import executors
from brain_pipeline.defs.ingestion import dataset_splits
from brain_pipeline.defs.resources import CarbonTracker, PipelineStorage
from brain_pipeline.defs.support import ArtifactStep, progress_log

_DEFAULTS = TrainingConfig()


class TrainingParams(dg.Config):
    """The launchpad's face of core.model.training.TrainingConfig; the defaults (and the
    comments on them) live there."""

    architecture: str = _DEFAULTS.architecture
    image_size: int = _DEFAULTS.image_size
    skull_strip: bool = _DEFAULTS.skull_strip
    intensity: str = _DEFAULTS.intensity
    epochs: int = _DEFAULTS.epochs
    batch_size: int = _DEFAULTS.batch_size
    learning_rate: float = _DEFAULTS.learning_rate
    lr_schedule: str = _DEFAULTS.lr_schedule
    lr_warmup_epochs: int = _DEFAULTS.lr_warmup_epochs
    early_stopping_patience: int = _DEFAULTS.early_stopping_patience
    restore_best_weights: bool = _DEFAULTS.restore_best_weights
    reduce_lr_patience: int = _DEFAULTS.reduce_lr_patience
    warmup_epochs: int = _DEFAULTS.warmup_epochs
    class_weights: bool = _DEFAULTS.class_weights
    precise_bn_batches: int = _DEFAULTS.precise_bn_batches
    jit_compile: bool = _DEFAULTS.jit_compile
    augment: bool = True
    seed: int = _DEFAULTS.seed

    def to_core(self) -> TrainingConfig:
        fields = self.model_dump()
        augment = fields.pop("augment")
        augmentation = (
            AugmentationConfig()
            if augment
            else AugmentationConfig(flip=False, rotation=0, zoom=0, contrast=0, brightness=0)
        )
        return TrainingConfig(**fields, augmentation=augmentation)


@dg.asset(
    deps=[dataset_splits],
    group_name="model",
    code_version="6",
    kinds={"keras", "tensorflow"},
    # One training at a time across runs (the pool's limit is the instance's), and its own
    # Celery queue so that a GPU worker can take only training steps.
    pool=executors.TRAINING_POOL,
    op_tags=executors.TRAINING_OP_TAGS,
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainingParams,
    storage: PipelineStorage,
    carbon: CarbonTracker,
) -> dg.MaterializeResult:
    """A Keras CNN trained on the train split, early-stopped on the val split."""
    step = ArtifactStep(
        context,
        storage,
        # The preprocessing code's version too: a change there changes every input tensor.
        config={**config.model_dump(), "preprocessing_version": PREPROCESSING_VERSION},
        upstream=["dataset_splits"],
        carbon=carbon,
    )
    if reused := step.reused():
        return reused
    table = pd.read_parquet(step.upstream["dataset_splits"].path)
    core_config = config.to_core()
    model_version = step.folder.name
    roots, cache = storage.raw_data().roots, storage.shared_dir("tensor_cache")

    def tensors(split: str):
        rows = table[table["split"] == split]
        return tensors_for_rows(
            rows, roots, core_config.preprocessing, cache, progress_log(context)
        )

    with step.tracked(model_version):  # preprocessing on a cold cache is part of the cost
        (train_x, train_y), (val_x, val_y) = tensors("train"), tensors("val")
        result = train_classifier(
            train_x,
            train_y,
            val_x,
            val_y,
            core_config,
            class_names=TARGET_CLASSES,
            # Keyed by the inputs, so re-running a killed materialization resumes it.
            resume_dir=storage.shared_dir("training_checkpoints") / step.signature,
            log=context.log.info,
        )
    path = step.folder / "model.keras"
    with atomic_path(path, suffix=".keras") as tmp:
        result.model.save(tmp)
    core_config.preprocessing.save(step.folder)
    write_json(step.folder / "history.json", result.history)
    write_json(
        step.folder / "training.json",
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
    best = result.best_epoch - 1  # the history covers every epoch, resumed ones too
    return step.result(
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
            "learning_curves": step.figure(
                "learning_curves.png", plots.learning_curves(result.history, result.best_epoch)
            ),
        }
    )
