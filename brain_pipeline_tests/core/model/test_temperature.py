"""Temperature scaling: recovers a known miscalibration, lowers ECE, moves no decision."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from brain_pipeline.core.model.evaluation import expected_calibration_error
from brain_pipeline.core.model.temperature import (
    fitted_temperature,
    fold_into_logits,
    with_temperature,
)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _overconfident(rng: np.random.Generator, n: int, factor: float):
    """Labels drawn from softmax(z), reported as softmax(factor * z): over-confident by
    `factor`, so the temperature that undoes it is `factor`."""
    logits = rng.normal(0, 1.5, (n, 3))
    honest = _softmax(logits)
    labels = np.array([rng.choice(3, p=p) for p in honest])
    return _softmax(factor * logits), labels


def test_the_fitted_temperature_undoes_overconfidence_and_lowers_ece() -> None:
    rng = np.random.default_rng(0)
    reported, labels = _overconfident(rng, 4000, 2.0)
    temperature = fitted_temperature(reported, labels)
    assert temperature == pytest.approx(2.0, rel=0.1)
    scaled = with_temperature(reported, temperature)
    before, _ = expected_calibration_error(labels, reported)
    after, _ = expected_calibration_error(labels, scaled)
    assert after < before / 2
    assert (scaled.argmax(axis=1) == reported.argmax(axis=1)).all()


def test_an_honest_model_keeps_a_temperature_near_one() -> None:
    reported, labels = _overconfident(np.random.default_rng(1), 4000, 1.0)
    assert fitted_temperature(reported, labels) == pytest.approx(1.0, rel=0.1)
    with pytest.raises(ValueError, match="validation images"):
        fitted_temperature(reported[:0], labels[:0])


def test_folding_into_the_logits_layer_gives_the_scaled_probabilities() -> None:
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(4,))
    logits = keras.layers.Dense(3, name="logits")(inputs)
    model = keras.Model(inputs, keras.layers.Activation("softmax")(logits))
    x = np.random.default_rng(2).normal(0, 3, (50, 4)).astype(np.float32)
    before = model.predict_on_batch(x)
    fold_into_logits(model, 2.5)
    after = model.predict_on_batch(x)
    np.testing.assert_allclose(after, with_temperature(before, 2.5), atol=1e-5)
    assert (after.argmax(axis=1) == before.argmax(axis=1)).all()
    with pytest.raises(ValueError, match="positive"):
        fold_into_logits(model, 0.0)
