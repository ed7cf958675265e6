"""Every explanation method behind `explanation_maps`: shapes, ranges, classes, layers."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from brain_pipeline.core.explain.heatmaps import gradcam
from brain_pipeline.core.explain.method_names import METHODS
from brain_pipeline.core.explain.methods import earlier_conv_layer_name, explanation_maps
from brain_pipeline_tests.core.explain.tiny_brains import SIZE, predict_classes


@pytest.mark.parametrize("method", METHODS)
def test_maps_of_every_method_are_normalised_and_follow_the_class(model, test_data, method):
    images = test_data[0][:6]
    maps = explanation_maps(model, images, method=method)
    assert maps.shape == (6, SIZE, SIZE) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    # The default class is the predicted one; another class gives other maps.
    predicted = predict_classes(model, images)
    np.testing.assert_allclose(explanation_maps(model, images, predicted, method=method), maps)
    other = explanation_maps(model, images, 1 - predicted, method=method)
    assert not np.allclose(other, maps)
    assert explanation_maps(model, images[:0], method=method).shape == (0, SIZE, SIZE)


def test_early_gradcam_uses_the_block_before_the_last(model, test_data):
    # The tiny CNN never downsamples: the block before the last one.
    assert earlier_conv_layer_name(model) == "conv1"
    images = test_data[0][:4]
    np.testing.assert_allclose(
        explanation_maps(model, images, method="gradcam-early"),
        gradcam(model, images, layer_name="conv1"),
    )
    # With a downsampling step, the last block on the finer grid.
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    x = keras.layers.ReLU(name="a_relu")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="b")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="c")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    downsampling = keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))
    assert earlier_conv_layer_name(downsampling) == "b"
    single = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="only")(inputs))
    with pytest.raises(ValueError, match="no convolution before 'only'"):
        earlier_conv_layer_name(single)


def test_an_unknown_method_is_refused_with_the_choices(model, test_data):
    with pytest.raises(ValueError, match="occlusion, integrated-gradients; got 'guided'"):
        explanation_maps(model, test_data[0][:2], method="guided")
    with pytest.raises(ValueError, match="2 class indices for 3 images"):
        explanation_maps(model, test_data[0][:3], np.array([0, 1]), method="occlusion")


def test_the_gallery_refuses_an_unknown_method_naming_the_setting():
    from brain_pipeline.core.explain.gallery import GallerySettings

    assert GallerySettings(method="occlusion").method == "occlusion"
    with pytest.raises(ValueError, match="gradcam_gallery: method must be one of gradcam, "):
        GallerySettings(method="guided")
