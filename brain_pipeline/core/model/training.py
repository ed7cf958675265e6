"""Training a classifier from cached tensors: seeded, early-stopped, resumable."""

from __future__ import annotations

import csv
import fcntl
import functools
import os
import shutil
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from brain_pipeline.core.artifacts import DiskFullError
from brain_pipeline.core.imaging.preprocessing import Preprocessing
from brain_pipeline.core.model.architectures import AugmentationConfig, build_model
from brain_pipeline.core.model.inputs import batch_stream
from brain_pipeline.core.model.temperature import fitted_temperature, fold_into_logits

# The preprocessing defaults live with Preprocessing (one default for training and for a
# bare model file).
_PREPROCESSING = Preprocessing(image_size=96)


@dataclass(frozen=True)
class TrainingConfig:
    architecture: str = "stacked_cnn"
    # 96 px: at 128 px the same schedule scored alike on the embedded data (test accuracy
    # 0.83, whole-tumour pointing game 0.67 against 0.65) at 1.8x the CPU time per epoch.
    image_size: int = 96
    # The schedule: 20 epochs of small batches, the learning rate warmed up linearly over 2
    # epochs to 2e-3, then cosine-decayed to zero. The slower one it replaced (60 epochs at
    # a constant 1e-3, 128 px) is `stacked_128_long` in sweep.toml.
    epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 2e-3
    # "constant", or "cosine": linear warm-up over `lr_warmup_epochs` from a tenth of
    # `learning_rate` up to it, then cosine decay to zero at the end of `epochs`.
    lr_schedule: str = "cosine"
    lr_warmup_epochs: int = 2
    # The cosine schedule anneals the rate to zero, so its last epoch is the model to keep:
    # the epoch of lowest validation loss (166 images) was a noisy pick from the middle of
    # the schedule, which localised lesions worse (whole-tumour pointing game 0.39 against
    # 0.59; docs/decisions.md, "Training schedule"). Patience 20 never stops a 20-epoch run.
    early_stopping_patience: int = 20
    # Keep the weights of the epoch with the lowest validation loss (from `warmup_epochs` on)
    # instead of the last epoch's.
    restore_best_weights: bool = False
    # XLA-compile the train and validation steps. Keras turns it off (with a warning) for
    # models that hold augmentation layers, which the default model does.
    jit_compile: bool = False
    # Epochs without a lower validation loss before the learning rate is halved (0: never).
    reduce_lr_patience: int = 0
    # Early stopping may not stop before this epoch: BatchNorm statistics need a few epochs to
    # settle, and the validation loss of the first epochs says little.
    warmup_epochs: int = 5
    class_weights: bool = True
    # Weigh each training image so that within its class every source counts alike (and the
    # classes alike, as `class_weights` does): a class whose images come mostly from one
    # download no longer lets that download's style stand for the class. Needs the rows'
    # sources (`train_sources`); replaces `class_weights` when on.
    source_balance: bool = False
    # Training batches over which BatchNorm statistics are recomputed before each validation
    # (0: keep Keras's moving averages). See PreciseBatchNorm.
    precise_bn_batches: int = 10
    # Preprocessing choices the model is trained with; recorded so prediction repeats them.
    # Stripping zeroes the skull and background (imaging.strip_skull); on the real data it
    # lowered the source probe and raised accuracy (docs/decisions.md, "Skull stripping").
    # Intensity: "equalise" or "percentile" (see imaging.Preprocessing).
    skull_strip: bool = _PREPROCESSING.skull_strip
    intensity: str = _PREPROCESSING.intensity
    # After training, fit one temperature on the validation images and fold it into the
    # logits layer (core/model/temperature.py): calibrated confidences, the same decisions.
    temperature_scaling: bool = True
    seed: int = 0
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(
            self.image_size, skull_strip=self.skull_strip, intensity=self.intensity
        )


@dataclass
class TrainingResult:
    model: keras.Model
    history: dict[str, list[float]]
    best_epoch: int
    epochs_run: int
    resumed_from_epoch: int
    train_seconds: float
    # The temperature folded into the logits layer (1.0: none).
    temperature: float = 1.0


class _EpochLogger(keras.callbacks.Callback):
    """Reports each epoch to the caller (the Dagster log, a progress bar...)."""

    def __init__(self, log: Callable[[str], None], total_epochs: int) -> None:
        super().__init__()
        self._log = log
        self._total = total_epochs
        self._started = 0.0
        self.first_epoch: int | None = None

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._started = time.perf_counter()
        if self.first_epoch is None:
            self.first_epoch = epoch

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        figures = ", ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()))
        seconds = time.perf_counter() - self._started
        self._log(f"epoch {epoch + 1}/{self._total} ({seconds:.1f} s): {figures}")


class _BackupSpaceGuard(keras.callbacks.Callback):
    """Stops training with a DiskFullError naming the backup folder when its file system
    cannot hold the next epoch's backup: HDF5, which the backup writes with, takes the whole
    process down (a segmentation fault) when the disk fills during the write."""

    def __init__(self, resume_dir: Path) -> None:
        super().__init__()
        self._folder = Path(resume_dir)

    def _check(self) -> None:
        variables = [*self.model.weights, *self.model.optimizer.variables]
        state = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
        needed = 2 * state + 1_000_000  # the new backup beside the old, and HDF5's overhead
        self._folder.mkdir(parents=True, exist_ok=True)
        if shutil.disk_usage(self._folder).free < needed:
            raise DiskFullError(self._folder / "latest.weights.h5", needed=needed)

    def on_train_begin(self, logs=None) -> None:
        self._check()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self._check()


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNorm layer of the model, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(batchnorm_layers(layer))
    return found


def recompute_batchnorm_statistics(
    model: keras.Model,
    tensors: np.ndarray,
    *,
    batch_size: int,
    batches: int,
    rng: np.random.Generator,
) -> int:
    """Replace every BatchNorm layer's moving mean and variance by the average of its batch
    statistics over ``batches`` random training batches, at the current weights ("precise
    BN", Wu & Johnson 2021). Returns the number of batches used (0: model has no BatchNorm).

    The model runs in training mode, as in a training step (augmentation on, each BatchNorm
    normalising with its batch statistics), but no weight changes.
    """
    layers = batchnorm_layers(model)
    n_batches = min(batches, len(tensors) // batch_size)
    if not layers or n_batches == 0:
        return 0
    momenta = [layer.momentum for layer in layers]
    chosen = rng.permutation(len(tensors))[: n_batches * batch_size]
    try:
        for i in range(n_batches):
            # momentum 1 - 1/(i+1) turns the moving average into the plain mean of batches.
            for layer in layers:
                layer.momentum = 1.0 - 1.0 / (i + 1)
            index = np.sort(chosen[i * batch_size : (i + 1) * batch_size])
            model(np.asarray(tensors[index], dtype=np.float32), training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return n_batches


class PreciseBatchNorm(keras.callbacks.Callback):
    """Recompute BatchNorm statistics at the current weights before each validation pass.

    Keras keeps moving averages of batch statistics that lag behind weights which change at
    every update, so validation ran a network whose normalisation belonged to earlier
    weights. On the embedded data that swung validation accuracy between 0.37 and 0.67 from
    one epoch to the next (epochs 6 to 11), while the same weights with recomputed
    statistics scored 0.65 to 0.74 (docs/decisions.md, "Precise BatchNorm statistics").
    Early stopping and reduce-on-plateau act on the validation loss, so they acted on that
    noise. The statistics the validation used are the ones saved with the epoch's weights.
    """

    def __init__(self, tensors: np.ndarray, *, batch_size: int, batches: int, seed: int) -> None:
        super().__init__()
        self._tensors = tensors
        self._batch_size = batch_size
        self._batches = batches
        self._seed = seed
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch = epoch

    def on_test_begin(self, logs=None) -> None:
        recompute_batchnorm_statistics(
            self.model,
            self._tensors,
            batch_size=self._batch_size,
            batches=self._batches,
            # seeded by epoch, so a resumed run draws the same batches
            rng=np.random.default_rng((self._seed, self._epoch)),
        )


def learning_rate_schedule(config: TrainingConfig, steps_per_epoch: int):
    """The optimiser's learning rate: a float (constant) or a schedule over training steps."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    if config.lr_schedule != "cosine":
        raise ValueError(
            f"lr_schedule {config.lr_schedule!r} is not known; use 'constant' or 'cosine'"
        )
    if config.reduce_lr_patience > 0:
        raise ValueError(
            "reduce_lr_patience only works with lr_schedule='constant'; set one of them"
        )
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(config.lr_warmup_epochs * steps_per_epoch, total - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate / 10 if warmup else config.learning_rate,
        decay_steps=total - warmup,
        warmup_target=config.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


# With `source_balance`, no image weighs more than this many times its class's average.
MAX_SOURCE_UPWEIGHT = 4.0


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    weights = len(labels) / (n_classes * np.maximum(counts, 1.0))
    return {i: float(w) for i, w in enumerate(weights)}


def source_balanced_weights(
    labels: np.ndarray, sources: Sequence[str], max_upweight: float = MAX_SOURCE_UPWEIGHT
) -> np.ndarray:
    """One weight per image: every class present weighs alike in total, and within a class
    every source holding it weighs alike, except that no image weighs more than
    `max_upweight` times its class's average: a source of a handful of images in a class
    (navoneel's five unique healthy slices) weighs by its images, and the other sources
    share the rest alike. The weights average 1."""
    labels, sources = np.asarray(labels), np.asarray(sources, dtype=object)
    if len(labels) != len(sources):
        raise ValueError(f"{len(labels)} labels but {len(sources)} sources")
    weights = np.empty(len(labels), dtype=np.float32)
    classes = np.unique(labels)
    for label in classes:
        in_class = labels == label
        shares = _source_shares(sources[in_class], max_upweight)
        class_total = len(labels) / len(classes)
        for source, share in shares.items():
            cell = in_class & (sources == source)
            weights[cell] = class_total * share / cell.sum()
    return weights


def _source_shares(sources: np.ndarray, max_upweight: float) -> dict[str, float]:
    """Each source's share of its class (summing to 1): equal shares, water-filled so that
    a small source's share is at most `max_upweight` times its fraction of the images."""
    names, counts = np.unique(sources, return_counts=True)
    shares, remaining = {}, 1.0
    for position, i in enumerate(np.argsort(counts, kind="stable")):
        equal = remaining / (len(names) - position)
        shares[names[i]] = min(equal, max_upweight * counts[i] / len(sources))
        remaining -= shares[names[i]]
    return shares


def train_classifier(
    train_tensors: np.ndarray,
    train_labels: np.ndarray,
    val_tensors: np.ndarray,
    val_labels: np.ndarray,
    config: TrainingConfig,
    *,
    class_names: Sequence[str],
    resume_dir: Path,
    log: Callable[[str], None] = print,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    train_sources: Sequence[str] | None = None,
) -> TrainingResult:
    """Fit a model; a run killed mid-way resumes from its last finished epoch in `resume_dir`.

    `train_sources` names each training image's dataset (needed by `source_balance`).
    Two processes training the same inputs at once do not share a resume folder: the second
    one trains in a folder of its own.
    """
    if len(train_tensors) == 0 or len(val_tensors) == 0:
        raise ValueError(
            f"training needs images in both train ({len(train_tensors)}) and val "
            f"({len(val_tensors)}) splits; add data or change the split fractions"
        )
    if config.source_balance and train_sources is None:
        raise ValueError(
            "source_balance = true weighs images by their source: pass train_sources "
            "(the training rows' datasets), or set source_balance = false"
        )
    resume_dir = Path(resume_dir)
    resume_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(resume_dir.with_name(resume_dir.name + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            resume_dir = resume_dir.with_name(f"{resume_dir.name}_pid{os.getpid()}")
            log(f"another process is training these inputs; using {resume_dir.name}")
        fit = functools.partial(
            _fit,
            train_tensors,
            train_labels,
            val_tensors,
            val_labels,
            config,
            class_names=class_names,
            resume_dir=resume_dir,
            log=log,
            extra_callbacks=extra_callbacks,
            sample_weights=_sample_weights(config, train_labels, train_sources),
        )
        try:
            result = fit()
        except (OSError, ValueError) as exc:
            if not _has_backup(resume_dir):
                raise
            # A kill during a checkpoint write leaves a torn file that fails every retry.
            log(f"could not resume from {resume_dir} ({exc}); starting from scratch")
            _discard_backup(resume_dir)
            result = fit()
    if config.temperature_scaling:
        _calibrate(result, val_tensors, val_labels, log)
    return result


def _sample_weights(config: TrainingConfig, labels, sources) -> np.ndarray | None:
    return source_balanced_weights(labels, sources) if config.source_balance else None


def _calibrate(result: TrainingResult, val_tensors, val_labels, log) -> None:
    """Fit a temperature on the validation images and fold it into the model."""
    probabilities = predict_probabilities(result.model, val_tensors)
    result.temperature = fitted_temperature(probabilities, val_labels)
    fold_into_logits(result.model, result.temperature)
    log(
        f"temperature scaling: T = {result.temperature:.3f}, fitted on "
        f"{len(val_labels)} validation images"
    )


def _history_file(resume_dir: Path) -> Path:
    return resume_dir.with_name(resume_dir.name + ".history.csv")


def _has_backup(resume_dir: Path) -> bool:
    return resume_dir.exists() and any(resume_dir.iterdir())


def _discard_backup(resume_dir: Path) -> None:
    shutil.rmtree(resume_dir, ignore_errors=True)
    _history_file(resume_dir).unlink(missing_ok=True)


def _compiled_model(config: TrainingConfig, n_classes: int, steps_per_epoch: int) -> keras.Model:
    model = build_model(
        config.architecture,
        image_size=config.image_size,
        n_classes=n_classes,
        augmentation=config.augmentation if config.augmentation.enabled else None,
        seed=config.seed,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate_schedule(config, steps_per_epoch)),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=config.jit_compile,
    )
    return model


def _callbacks(
    config: TrainingConfig, train_tensors, resume_dir: Path, early_stopping, epoch_logger, extra
) -> list[keras.callbacks.Callback]:
    callbacks = [
        # Before the backup: HDF5 crashes the process when a disk fills under it.
        _BackupSpaceGuard(resume_dir),
        # Saves state after every epoch and restores it when the same fit is started again.
        keras.callbacks.BackupAndRestore(str(resume_dir), delete_checkpoint=True),
        # Every epoch's figures, kept across a kill so the history is whole after a resume.
        keras.callbacks.CSVLogger(str(_history_file(resume_dir)), append=True),
        early_stopping,
        epoch_logger,
        *extra,
    ]
    if config.reduce_lr_patience > 0:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=config.reduce_lr_patience
            )
        )
    if config.precise_bn_batches > 0:
        callbacks.append(
            PreciseBatchNorm(
                train_tensors,
                batch_size=config.batch_size,
                batches=config.precise_bn_batches,
                seed=config.seed,
            )
        )
    return callbacks


def _fit(
    train_tensors,
    train_labels,
    val_tensors,
    val_labels,
    config: TrainingConfig,
    *,
    class_names,
    resume_dir: Path,
    log,
    extra_callbacks,
    sample_weights,
) -> TrainingResult:
    if not _has_backup(resume_dir):
        _history_file(resume_dir).unlink(missing_ok=True)  # left by a run that never saved
    keras.utils.set_random_seed(config.seed)
    n_classes = len(class_names)
    steps_per_epoch = -(-len(train_tensors) // config.batch_size)
    model = _compiled_model(config, n_classes, steps_per_epoch)
    stream = functools.partial(batch_stream, n_classes=n_classes, batch_size=config.batch_size)
    train_stream = stream(
        train_tensors, train_labels, shuffle=True, seed=config.seed, weights=sample_weights
    )
    val_stream = stream(val_tensors, val_labels, shuffle=False, seed=0)
    epoch_logger = _EpochLogger(log, config.epochs)
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss",
        patience=config.early_stopping_patience,
        restore_best_weights=config.restore_best_weights,
        start_from_epoch=config.warmup_epochs,
    )
    by_class = config.class_weights and sample_weights is None
    weights = balanced_class_weights(train_labels, n_classes) if by_class else None
    started = time.perf_counter()
    model.fit(
        train_stream,
        validation_data=val_stream,
        epochs=config.epochs,
        class_weight=weights,
        callbacks=_callbacks(
            config, train_tensors, resume_dir, early_stopping, epoch_logger, extra_callbacks
        ),
        shuffle=False,  # the stream shuffles itself, seeded, once per epoch
        verbose=0,
    )
    seconds = time.perf_counter() - started
    history = _read_history(_history_file(resume_dir))
    _history_file(resume_dir).unlink(missing_ok=True)
    epochs_run = len(history.get("loss", []))
    # The weights kept are the best epoch's only if early stopping restored them (it watches
    # from `warmup_epochs` on); otherwise they are the last epoch's.
    restored = early_stopping.best_weights is not None
    return TrainingResult(
        model=model,
        history=history,
        best_epoch=early_stopping.best_epoch + 1 if restored else epochs_run,
        epochs_run=epochs_run,
        resumed_from_epoch=epoch_logger.first_epoch or 0,
        train_seconds=seconds,
    )


def _read_history(path: Path) -> dict[str, list[float]]:
    """CSVLogger's file as {metric: [value per epoch]}, one row per epoch since the start."""
    if not path.exists():
        return {}
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows = list({int(row["epoch"]): row for row in rows}.values())  # last write of an epoch wins
    metrics = [name for name in (rows[0] if rows else {}) if name != "epoch"]
    return {name: [float(row[name]) for row in rows] for name in metrics}


def predict_probabilities(model: keras.Model, tensors: np.ndarray, batch_size: int = 64):
    """Class probabilities for cached tensors, read batch by batch."""
    forward = _inference_function(model)
    outputs = [
        forward(np.asarray(tensors[start : start + batch_size], dtype=np.float32)).numpy()
        for start in range(0, len(tensors), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, model.output_shape[-1]))


# One traced inference graph per model, for every batch size: Keras's predict function is
# traced again for each new batch shape (a last, smaller batch; the deletion curves' chunks),
# and TensorFlow warns about the retracing.
_INFERENCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _inference_function(model: keras.Model):
    import tensorflow as tf

    if model not in _INFERENCE:
        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        held = weakref.ref(model)  # the cache must not keep the model alive
        _INFERENCE[model] = tf.function(
            lambda x: held()(x, training=False), input_signature=[spec], autograph=False
        )
    return _INFERENCE[model]
