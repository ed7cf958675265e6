"""trained_model: a Keras CNN trained on the train split, early-stopped on the val split."""

import dagster as dg
import pandas as pd

from brain_pipeline.core import artifact_names, plots
from brain_pipeline.core.artifacts import atomic_path, write_json
from brain_pipeline.core.classes import TARGET_CLASSES
from brain_pipeline.core.imaging.preprocessing import PREPROCESSING_VERSION
from brain_pipeline.core.model import integrity
from brain_pipeline.core.model.leaderboard import model_version_of
from brain_pipeline.core.model.sweep import Sweep
from brain_pipeline.core.model.tensors import tensors_for_rows
from brain_pipeline.core.model.training import TrainingConfig, train_classifier
from brain_pipeline.defs import executors
from brain_pipeline.defs.ingestion import dataset_splits
from brain_pipeline.defs.resources import CarbonTracker, PipelineStorage
from brain_pipeline.defs.support import ArtifactStep, progress_log


class TrainingParams(dg.Config):
    """Settings given at launch, on top of the partition's configuration in the sweep file.

    Each left unset (null) takes the configuration's value, else TrainingConfig's default
    (core/model/training.py, where each is explained).
    """

    architecture: str | None = None
    image_size: int | None = None
    skull_strip: bool | None = None
    intensity: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    lr_schedule: str | None = None
    lr_warmup_epochs: int | None = None
    early_stopping_patience: int | None = None
    restore_best_weights: bool | None = None
    reduce_lr_patience: int | None = None
    warmup_epochs: int | None = None
    class_weights: bool | None = None
    source_balance: bool | None = None
    precise_bn_batches: int | None = None
    jit_compile: bool | None = None
    temperature_scaling: bool | None = None
    augment: bool | None = None
    seed: int | None = None

    def to_core(self, sweep: Sweep, configuration: str) -> TrainingConfig:
        given = {key: value for key, value in self.model_dump().items() if value is not None}
        return sweep.resolve(configuration, given)


@dg.asset(
    deps=[dataset_splits],
    group_name="model",
    code_version="9",
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
    """A Keras CNN of one sweep configuration, trained on the train split."""
    sweep = storage.sweep()
    if not context.has_partition_key:
        raise dg.Failure(
            "trained_model is partitioned by training configuration: launch it for one of "
            f"{', '.join(sweep.names)} (sweep file {sweep.path})"
        )
    core_config = config.to_core(sweep, context.partition_key)
    step = ArtifactStep(
        context,
        storage,
        # The resolved configuration (a sweep file edit is a new input), and the
        # preprocessing code's version: a change there changes every input tensor.
        config={**core_config.as_dict(), "preprocessing_version": PREPROCESSING_VERSION},
        carbon=carbon,
    )
    if reused := step.reused():
        return reused
    table = pd.read_parquet(step.upstream["dataset_splits"].path)
    model_version = model_version_of(step.folder)
    roots, cache = storage.raw_data().roots, storage.shared_dir(artifact_names.TENSOR_CACHE)

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
            resume_dir=storage.shared_dir(artifact_names.TRAINING_CHECKPOINTS) / step.signature,
            log=context.log.info,
            train_sources=table.loc[table["split"] == "train", "dataset"].tolist(),
        )
    path = _save(step, result, core_config, n_train=len(train_y), n_val=len(val_y))
    best = result.best_epoch - 1  # the history covers every epoch, resumed ones too
    return step.result(
        {
            "path": dg.MetadataValue.path(str(path)),
            "model_version": model_version,
            "configuration": context.partition_key,
            "architecture": core_config.architecture,
            "parameters": int(result.model.count_params()),
            "image_size": core_config.image_size,
            "epochs": core_config.epochs,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "resumed_from_epoch": result.resumed_from_epoch,
            "val_accuracy": float(result.history["val_accuracy"][best]),
            "val_loss": float(result.history["val_loss"][best]),
            "train_seconds": round(result.train_seconds, 1),
            "temperature": round(result.temperature, 4),
            "learning_curves": step.figure(
                "learning_curves.png", plots.learning_curves(result.history, result.best_epoch)
            ),
        }
    )


def _save(step: ArtifactStep, result, core_config: TrainingConfig, *, n_train: int, n_val: int):
    """model.keras, and beside it what prediction and the leaderboard need to know of it."""
    path = step.folder / artifact_names.MODEL
    with atomic_path(path, suffix=".keras") as tmp:
        result.model.save(tmp)
    core_config.preprocessing.save(step.folder)
    write_json(step.folder / artifact_names.HISTORY, result.history)
    write_json(
        step.folder / artifact_names.TRAINING,
        {
            "configuration": step.context.partition_key,
            "config": core_config.as_dict(),
            "class_names": list(TARGET_CLASSES),
            "model_version": model_version_of(step.folder),
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "resumed_from_epoch": result.resumed_from_epoch,
            "train_seconds": result.train_seconds,
            "temperature": result.temperature,
            "n_train": int(n_train),
            "n_val": int(n_val),
        },
    )
    # Last: the sha256 of what serving loads, so later damage to the files can be told.
    integrity.record_checksums(step.folder)
    return path
