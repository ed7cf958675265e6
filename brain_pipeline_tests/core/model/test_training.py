"""Training runs, is interrupted, and resumes from its last finished epoch."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from brain_pipeline.core.model.architectures import AugmentationConfig, build_model
from brain_pipeline.core.model.temperature import with_temperature
from brain_pipeline.core.model.training import (
    TrainingConfig,
    learning_rate_schedule,
    predict_probabilities,
    recompute_batchnorm_statistics,
    source_balanced_weights,
    train_classifier,
)

CLASSES = ("healthy_brain", "tumor_brain", "alzheimer_brain")


def _toy_data(n: int = 48, size: int = 32, seed: int = 0):
    """Class = brightness of a central square, so a tiny model can learn it quickly."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.normal(0.1, 0.02, (n, size, size, 1)).astype(np.float32)
    for image, label in zip(images, labels, strict=True):
        image[8:24, 8:24] += 0.3 * (label + 1)
    return np.clip(images, 0, 1).astype(np.float16), labels


class _KillAfterEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("simulated kill")


def _config(**overrides) -> TrainingConfig:
    options = dict(
        # The smallest architecture: these tests are about the training mechanics.
        architecture="compact_cnn",
        image_size=32,
        epochs=4,
        batch_size=16,
        early_stopping_patience=10,
        augmentation=AugmentationConfig(flip=False, rotation=0, zoom=0, contrast=0, brightness=0),
    )
    options.update(overrides)
    return TrainingConfig(**options)


@pytest.mark.slow
def test_training_learns_and_resumes_after_a_kill(tmp_path: Path) -> None:
    x, y = _toy_data()
    resume = tmp_path / "resume"
    with pytest.raises(KeyboardInterrupt):
        train_classifier(
            x,
            y,
            x,
            y,
            _config(),
            class_names=CLASSES,
            resume_dir=resume,
            log=lambda _: None,
            extra_callbacks=[_KillAfterEpoch()],
        )
    assert any(resume.iterdir()), "a checkpoint must exist after the kill"
    messages: list[str] = []
    result = train_classifier(
        x,
        y,
        x,
        y,
        _config(epochs=12, batch_size=8, learning_rate=3e-3),
        class_names=CLASSES,
        resume_dir=resume,
        log=messages.append,
    )
    assert result.resumed_from_epoch == 2
    assert messages[0].startswith("epoch 3/12")
    assert result.epochs_run == 12
    # The history covers the epochs before the kill too.
    assert len(result.history["loss"]) == 12 and len(result.history["val_accuracy"]) == 12
    probabilities = predict_probabilities(result.model, x)
    assert probabilities.shape == (48, 3)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert (probabilities.argmax(1) == y).mean() > 0.8
    assert not resume.exists() or not any(resume.iterdir()), "finished runs delete their backup"


@pytest.mark.slow
def test_same_seed_same_weights(tmp_path: Path) -> None:
    x, y = _toy_data()
    runs = [
        train_classifier(
            x,
            y,
            x,
            y,
            _config(epochs=1),
            class_names=CLASSES,
            resume_dir=tmp_path / f"r{i}",
            log=lambda _: None,
        )
        for i in range(2)
    ]
    for a, b in zip(runs[0].model.get_weights(), runs[1].model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("architecture", ["compact_cnn", "stacked_cnn", "seed_cnn"])
def test_architectures_end_in_logits_then_softmax(architecture: str) -> None:
    model = build_model(architecture, image_size=64, n_classes=3, augmentation=AugmentationConfig())
    assert model.get_layer("logits").activation.__name__ == "linear"
    assert model.layers[-1].name == "probabilities"
    assert model.output_shape == (None, 3)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("resnet9000", image_size=64, n_classes=3)


@pytest.mark.slow
def test_best_epoch_names_the_weights_actually_kept(tmp_path: Path) -> None:
    x, y = _toy_data()
    # Training ends before early stopping starts watching: the last epoch's weights are kept.
    short = train_classifier(
        x,
        y,
        x,
        y,
        _config(epochs=3, warmup_epochs=5),
        class_names=CLASSES,
        resume_dir=tmp_path / "a",
        log=lambda _: None,
    )
    assert short.best_epoch == 3
    # Watching from the start: the kept epoch is the one with the lowest validation loss.
    watched = train_classifier(
        x,
        y,
        x,
        y,
        _config(epochs=6, warmup_epochs=0, restore_best_weights=True),
        class_names=CLASSES,
        resume_dir=tmp_path / "b",
        log=lambda _: None,
    )
    losses = watched.history["val_loss"]
    assert watched.best_epoch == int(np.argmin(losses)) + 1
    # Not restoring: the last epoch's weights are kept, whatever the validation loss did.
    last = train_classifier(
        x,
        y,
        x,
        y,
        _config(epochs=4, warmup_epochs=0, restore_best_weights=False),
        class_names=CLASSES,
        resume_dir=tmp_path / "c",
        log=lambda _: None,
    )
    assert last.best_epoch == last.epochs_run == 4


@pytest.mark.slow
def test_a_torn_checkpoint_restarts_training_instead_of_failing(tmp_path: Path) -> None:
    x, y = _toy_data()
    resume = tmp_path / "resume"
    resume.mkdir()
    (resume / "training_metadata.json").write_text('{"epoch": 1}')
    (resume / "latest.weights.h5").write_bytes(b"half a file")
    messages: list[str] = []
    result = train_classifier(
        x,
        y,
        x,
        y,
        _config(epochs=2),
        class_names=CLASSES,
        resume_dir=resume,
        log=messages.append,
    )
    assert result.epochs_run == 2
    assert any("starting from scratch" in message for message in messages)


@pytest.mark.parametrize("patience", [1, 0])
def test_the_learning_rate_is_halved_on_a_plateau_unless_turned_off(
    tmp_path: Path, patience: int
) -> None:
    x, y = _toy_data()
    wrong = (y + 1) % 3  # validation labels the training moves away from: the loss rises
    result = train_classifier(
        x,
        y,
        x,
        wrong,
        _config(
            epochs=4,
            warmup_epochs=0,
            learning_rate=3e-3,
            lr_schedule="constant",
            reduce_lr_patience=patience,
        ),
        class_names=CLASSES,
        resume_dir=tmp_path / "resume",
        log=lambda _: None,
    )
    assert result.epochs_run == 4
    final = float(keras.ops.convert_to_numpy(result.model.optimizer.learning_rate))
    if patience:
        assert final <= 3e-3 / 2 * 1.0001
    else:
        assert final == pytest.approx(3e-3)


def test_cosine_schedule_warms_up_then_decays_to_zero() -> None:
    config = TrainingConfig(epochs=10, learning_rate=2e-3, lr_schedule="cosine", lr_warmup_epochs=2)
    schedule = learning_rate_schedule(config, steps_per_epoch=5)  # 50 steps, 10 of warm-up

    def rate(step: int) -> float:
        return float(keras.ops.convert_to_numpy(schedule(step)))

    assert rate(0) == pytest.approx(2e-4)  # a tenth of the peak
    assert rate(5) == pytest.approx(1.1e-3)  # linear: half-way up
    assert rate(10) == pytest.approx(2e-3)  # the peak at the end of the warm-up
    assert rate(30) == pytest.approx(1e-3)  # cosine: half the peak half-way down
    assert rate(50) == pytest.approx(0.0, abs=1e-9)
    rates = [rate(step) for step in range(10, 51)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    without_warmup = learning_rate_schedule(
        TrainingConfig(epochs=10, learning_rate=2e-3, lr_warmup_epochs=0), steps_per_epoch=5
    )
    assert float(keras.ops.convert_to_numpy(without_warmup(0))) == pytest.approx(2e-3)


def test_constant_schedule_and_bad_schedule_settings() -> None:
    assert learning_rate_schedule(TrainingConfig(lr_schedule="constant"), 7) == 2e-3
    with pytest.raises(ValueError, match="lr_schedule 'linear'"):
        learning_rate_schedule(TrainingConfig(lr_schedule="linear"), 7)
    with pytest.raises(ValueError, match="reduce_lr_patience"):
        learning_rate_schedule(TrainingConfig(lr_schedule="cosine", reduce_lr_patience=3), 7)


@pytest.mark.slow
def test_a_resumed_cosine_run_continues_the_schedule(tmp_path: Path) -> None:
    """The optimiser's step count is restored with the weights, so the learning rate after a
    resume is the one the uninterrupted run would have had."""
    x, y = _toy_data()
    config = _config(epochs=4, learning_rate=3e-3, lr_schedule="cosine", lr_warmup_epochs=1)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(
            x,
            y,
            x,
            y,
            config,
            class_names=CLASSES,
            resume_dir=tmp_path / "r",
            log=lambda _: None,
            extra_callbacks=[_KillAfterEpoch()],
        )
    result = train_classifier(
        x, y, x, y, config, class_names=CLASSES, resume_dir=tmp_path / "r", log=lambda _: None
    )
    assert result.resumed_from_epoch == 2 and result.epochs_run == 4
    optimizer = result.model.optimizer
    assert int(optimizer.iterations.numpy()) == 4 * 3  # 48 images in batches of 16
    final = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    assert final == pytest.approx(0.0, abs=1e-9)


def _mean_of_batch_moments(values: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean over batches of each batch's mean and (biased) variance."""
    batches = values.reshape(-1, batch_size, *values.shape[1:])
    axes = tuple(range(1, batches.ndim - 1))
    return batches.mean(axis=axes).mean(axis=0), batches.var(axis=axes).mean(axis=0)


def test_recomputed_batchnorm_statistics_are_the_mean_of_batch_statistics() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal([3.0, -1.0], [2.0, 0.5], (64, 8, 8, 2)).astype(np.float32)
    inputs = keras.Input((8, 8, 2))
    norm = keras.layers.BatchNormalization(momentum=0.9)
    pooled = keras.layers.GlobalAveragePooling2D()(norm(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(pooled))

    used = recompute_batchnorm_statistics(
        model, x, batch_size=16, batches=3, rng=np.random.default_rng(7)
    )

    assert used == 3
    chosen = np.random.default_rng(7).permutation(64)[:48]
    drawn = np.concatenate([x[np.sort(chosen[i * 16 : (i + 1) * 16])] for i in range(3)])
    mean, variance = _mean_of_batch_moments(drawn, 16)
    np.testing.assert_allclose(norm.moving_mean.numpy(), mean, rtol=1e-4)
    np.testing.assert_allclose(norm.moving_variance.numpy(), variance, rtol=1e-4)
    assert norm.momentum == 0.9, "the layer's own momentum is put back"
    # Asking for more batches than the data holds uses the whole batches there are.
    assert (
        recompute_batchnorm_statistics(
            model, x, batch_size=16, batches=10, rng=np.random.default_rng(0)
        )
        == 4
    )
    without_batchnorm = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Flatten()])
    assert (
        recompute_batchnorm_statistics(
            without_batchnorm, x, batch_size=16, batches=3, rng=np.random.default_rng(0)
        )
        == 0
    )


@pytest.mark.parametrize("precise_bn_batches", [2, 0])
def test_validation_uses_batchnorm_statistics_of_the_current_weights(
    tmp_path: Path, precise_bn_batches: int
) -> None:
    """The first BatchNorm's statistics after training are those of its inputs at the final
    weights, on the batches drawn before the last validation; Keras's moving averages
    (precise_bn_batches=0) lag behind them."""
    x, y = _toy_data()
    config = _config(epochs=3, warmup_epochs=5, precise_bn_batches=precise_bn_batches)
    model = train_classifier(
        x, y, x, y, config, class_names=CLASSES, resume_dir=tmp_path / "r", log=lambda _: None
    ).model
    conv = keras.Model(model.inputs, model.get_layer("block1_conv").output)
    chosen = np.random.default_rng((config.seed, config.epochs - 1)).permutation(len(x))[:32]
    drawn = np.concatenate([x[np.sort(chosen[i * 16 : (i + 1) * 16])] for i in range(2)])
    mean, _ = _mean_of_batch_moments(conv.predict(drawn.astype(np.float32), verbose=0), 16)
    moving = model.get_layer("block1_bn").moving_mean.numpy()
    matches = np.allclose(moving, mean, rtol=1e-3, atol=1e-5)
    assert matches == (precise_bn_batches > 0)


@pytest.mark.slow
def test_temperature_scaling_calibrates_without_moving_a_decision(tmp_path: Path) -> None:
    """The same training with and without temperature scaling: the calibrated model gives
    the uncalibrated one's probabilities at the fitted temperature, the same classes, and
    no higher validation log-loss."""
    x, y = _toy_data()
    val_x, val_y = _toy_data(seed=1)
    results = {
        scaling: train_classifier(
            x,
            y,
            val_x,
            val_y,
            _config(epochs=3, temperature_scaling=scaling),
            class_names=CLASSES,
            resume_dir=tmp_path / f"r{scaling}",
            log=lambda _: None,
        )
        for scaling in (False, True)
    }
    assert results[False].temperature == 1.0
    plain = predict_probabilities(results[False].model, val_x)
    scaled = predict_probabilities(results[True].model, val_x)
    np.testing.assert_allclose(
        scaled, with_temperature(plain, results[True].temperature), atol=1e-4
    )
    assert (scaled.argmax(1) == plain.argmax(1)).all()

    def log_loss(p):
        return -np.log(p[np.arange(len(val_y)), val_y] + 1e-12).mean()

    assert log_loss(scaled) <= log_loss(plain) + 1e-6


def test_source_balanced_weights_make_each_class_and_each_of_its_sources_weigh_alike() -> None:
    labels = np.array([0] * 40 + [1] * 20 + [2] * 10)
    # class 0: 30 from "a", 10 from "b"; class 1: all from "a"; class 2: 5 from "b", 5 from "c"
    sources = ["a"] * 30 + ["b"] * 10 + ["a"] * 20 + ["b"] * 5 + ["c"] * 5
    weights = source_balanced_weights(labels, sources)
    cells = {}
    for label, source, weight in zip(labels, sources, weights, strict=True):
        cells[(label, source)] = cells.get((label, source), 0.0) + weight
    per_class = {c: sum(w for (k, _), w in cells.items() if k == c) for c in (0, 1, 2)}
    np.testing.assert_allclose(list(per_class.values()), [70 / 3] * 3, rtol=1e-5)
    np.testing.assert_allclose([cells[(0, "a")], cells[(0, "b")]], [70 / 6] * 2, rtol=1e-5)
    np.testing.assert_allclose([cells[(2, "b")], cells[(2, "c")]], [70 / 6] * 2, rtol=1e-5)
    assert weights.mean() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="70 labels but 3 sources"):
        source_balanced_weights(labels, ["a", "b", "c"])


def test_source_balance_needs_the_sources_and_trains_with_them(tmp_path: Path) -> None:
    x, y = _toy_data(n=24)
    config = _config(epochs=1, source_balance=True)
    with pytest.raises(ValueError, match="pass train_sources"):
        train_classifier(
            x, y, x, y, config, class_names=CLASSES, resume_dir=tmp_path / "a", log=lambda _: None
        )
    result = train_classifier(
        x,
        y,
        x,
        y,
        config,
        class_names=CLASSES,
        resume_dir=tmp_path / "b",
        log=lambda _: None,
        train_sources=["one"] * 12 + ["two"] * 12,
    )
    assert result.epochs_run == 1 and np.isfinite(result.history["loss"][0])


def test_noise_and_blur_change_training_inputs_only() -> None:
    from brain_pipeline.core.model.architectures import augmentation_layers

    style = AugmentationConfig(flip=False, rotation=0, zoom=0, noise=0.05, blur=1.0)
    stack = augmentation_layers(style, seed=0)
    assert [type(layer).__name__ for layer in stack] == ["RandomGaussianBlur", "GaussianNoise"]
    image = np.zeros((2, 32, 32, 1), np.float32)
    image[:, 12:20, 12:20] = 1.0
    changed, kept = image, image
    for layer in stack:
        changed = layer(changed, training=True)
        kept = layer(kept, training=False)
    np.testing.assert_array_equal(np.asarray(kept), image)
    assert np.abs(np.asarray(changed) - image).mean() > 0.01


def test_a_source_of_a_handful_of_images_is_weighed_up_at_most_four_times() -> None:
    labels = np.zeros(1000, dtype=int)
    sources = ["big"] * 600 + ["mid"] * 395 + ["tiny"] * 5
    weights = source_balanced_weights(labels, sources)
    tiny, mid, big = weights[-1], weights[600], weights[0]
    assert tiny == pytest.approx(4.0), "capped at 4 x the class average"
    # the other two share the rest alike: (1000 - 20) / 2 each
    assert mid * 395 == pytest.approx(490, rel=1e-5) and big * 600 == pytest.approx(490, rel=1e-5)
    assert weights.mean() == pytest.approx(1.0)
