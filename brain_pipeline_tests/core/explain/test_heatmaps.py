"""Grad-CAM / Grad-CAM++ heatmaps of the tiny CNN, the layer lookup and random maps."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from brain_pipeline.core.explain.heatmaps import gradcam, last_conv_layer_name, random_heatmaps
from brain_pipeline_tests.core.explain.tiny_brains import SIZE, predict_classes


def test_tiny_cnn_is_clearly_accurate(model, train_data, test_data):
    for images, labels, _ in (train_data, test_data):
        assert (predict_classes(model, images) == labels).mean() > 0.9


def test_last_conv_layer_name(model):
    assert last_conv_layer_name(model) == "conv2"
    dense_only = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="logits")])
    with pytest.raises(ValueError, match="Conv2D"):
        last_conv_layer_name(dense_only)


def test_heatmaps_shape_range_and_batching(model, test_data):
    images = test_data[0][:10]
    maps = gradcam(model, images)
    assert maps.shape == (10, SIZE, SIZE)
    assert maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    peaks = maps.reshape(10, -1).max(axis=1)
    assert np.all(np.isclose(peaks, 1.0) | (peaks == 0.0))
    # Batching must not change the result; the default class is the predicted one.
    np.testing.assert_allclose(gradcam(model, images, batch_size=3), maps, atol=1e-5)
    predicted = predict_classes(model, images)
    np.testing.assert_allclose(gradcam(model, images, predicted), maps, atol=1e-5)


def test_gradients_are_taken_of_the_logits(model, test_data):
    # Scale the logits 1000x: the softmax saturates (a probability within float32's last
    # step of 1.0, gradients ~1e-7 of the logits') while Grad-CAM on the logits is unchanged
    # after normalisation.
    saturated = keras.models.clone_model(model)
    saturated.set_weights(model.get_weights())
    kernel, bias = saturated.get_layer("logits").get_weights()
    saturated.get_layer("logits").set_weights([kernel * 1e3, bias * 1e3])
    images = test_data[0]
    probs = saturated.predict(images, verbose=0)
    images = images[probs.max(axis=1) >= 1.0 - 1e-6][:8]
    assert len(images) >= 4
    classes = predict_classes(saturated, images)

    logits = keras.Model(saturated.inputs, saturated.get_layer("logits").output)
    x = tf.convert_to_tensor(images)
    gradients = {}
    for name, network in (("softmax", saturated), ("logits", logits)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            top = tf.gather(network(x), classes, axis=1, batch_dims=1)
        gradients[name] = np.abs(tape.gradient(top, x).numpy()).max()
    assert gradients["logits"] > 0.0
    assert gradients["softmax"] < 1e-5 * gradients["logits"]  # softmax gradients are dead

    maps = gradcam(saturated, images, classes)
    assert np.all(maps.reshape(len(images), -1).max(axis=1) == pytest.approx(1.0))
    np.testing.assert_allclose(maps, gradcam(model, images, classes), atol=1e-4)


def test_gradcam_plus_plus_differs_and_validates(model, lesion_set):
    images, labels, _ = lesion_set
    plain = gradcam(model, images, labels)
    plus = gradcam(model, images, labels, method="gradcam++")
    assert plus.shape == plain.shape and plus.min() >= 0.0 and plus.max() <= 1.0
    assert not np.allclose(plus, plain, atol=1e-3)
    with pytest.raises(ValueError, match="method"):
        gradcam(model, images, labels, method="guided")
    with pytest.raises(ValueError, match="class indices"):
        gradcam(model, images, labels[:3])


def test_sequential_models(model, test_data):
    images = test_data[0][:6]
    layers = [
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, name="logits"),
        keras.layers.Activation("softmax", name="probabilities"),
    ]
    sequential = keras.Sequential([keras.Input((SIZE, SIZE, 1)), *layers])
    sequential.set_weights(model.get_weights())
    np.testing.assert_allclose(gradcam(sequential, images), gradcam(model, images), atol=1e-5)

    # Never built: gradcam has to call it once to get symbolic inputs.
    unbuilt = keras.Sequential(
        [
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, name="logits"),
            keras.layers.Activation("softmax"),
        ]
    )
    maps = gradcam(unbuilt, images, method="gradcam++")
    assert maps.shape == (6, SIZE, SIZE) and np.isfinite(maps).all()


def test_random_heatmaps_are_smooth_seeded_maps():
    maps = random_heatmaps(np.random.default_rng(5), (3, 32, 32))
    assert maps.shape == (3, 32, 32) and maps.min() >= 0.0 and maps.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(maps, random_heatmaps(np.random.default_rng(5), (3, 32, 32)))
    # Neighbouring pixels differ far less than for white noise (~0.33 mean |diff|).
    assert np.abs(np.diff(maps, axis=2)).mean() < 0.1
