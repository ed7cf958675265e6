"""Grad-CAM / Grad-CAM++ heatmaps of a Keras classifier, and smooth random maps to compare.

Heatmaps follow Selvaraju et al. (Grad-CAM) and Chattopadhyay et al. (Grad-CAM++); the
gradients are taken of the logits, since a saturated softmax has almost none.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

METHODS = ("gradcam", "gradcam++")
LOGITS_LAYER = "logits"
CONV_TYPES = (keras.layers.Conv2D, keras.layers.SeparableConv2D)

# Layers that only rescale or rectify a feature map, channel by channel.
_ELEMENTWISE_TYPES = (keras.layers.BatchNormalization, keras.layers.ReLU, keras.layers.Activation)


def last_conv_layer_name(model: keras.Model) -> str:
    """The output of the last convolutional block (top level only).

    That is the last Conv2D / SeparableConv2D, or the BatchNorm / ReLU right after it: a
    convolution followed by BatchNorm outputs unnormalised, partly negative maps, while the
    block's rectified output is what the classifier head actually pools.
    """
    layers = model.layers
    for position in range(len(layers) - 1, -1, -1):
        if isinstance(layers[position], CONV_TYPES):
            return conv_block_output(layers, position)
    raise ValueError(f"model {model.name!r} has no Conv2D/SeparableConv2D layer for Grad-CAM")


def conv_block_output(layers: list, position: int) -> str:
    """The name of the convolution at `position`, or of the BatchNorm / ReLU layers right
    after it that keep its output's shape (its block's output)."""
    end = position
    while end + 1 < len(layers) and isinstance(layers[end + 1], _ELEMENTWISE_TYPES):
        if layers[end + 1].output.shape != layers[position].output.shape:
            break
        end += 1
    return layers[end].name


def as_image_batch(images: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, 1) -> float32 (N, H, W, 1)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (N, H, W[, 1]), got {images.shape}")
    return images


def model_inputs(model: keras.Model, images: np.ndarray) -> list:
    # An unbuilt Sequential has no symbolic inputs until it is called once.
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        model(images[:1], training=False)
        inputs = model.inputs
    return list(inputs)


def logits_output(model: keras.Model) -> Any:
    # Gradients must come from the logits: a saturated softmax has ~0 gradient.
    try:
        return model.get_layer(LOGITS_LAYER).output
    except ValueError:
        pass
    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax) or (
        isinstance(last, keras.layers.Activation) and "softmax" in str(last.activation)
    ):
        return last.input
    raise ValueError(f"model {model.name!r} has no {LOGITS_LAYER!r} layer and no final softmax")


def _grad_model(model: keras.Model, images: np.ndarray, layer_name: str) -> keras.Model:
    inputs = model_inputs(model, images)
    conv_output = model.get_layer(layer_name).output
    return keras.Model(inputs, [conv_output, logits_output(model)])


def _channel_weights(conv: tf.Tensor, grads: tf.Tensor, method: str) -> tf.Tensor:
    """Per-channel weights (N, 1, 1, K) from activations and logit gradients."""
    if method == "gradcam":
        return tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    # Grad-CAM++ with S = exp(logit): higher derivatives of S are S * grad^k
    # (piecewise-linear net), so the exp factor cancels in the alphas.
    grads_2, grads_3 = grads**2, grads**3
    denom = 2.0 * grads_2 + tf.reduce_sum(conv, axis=(1, 2), keepdims=True) * grads_3
    safe = tf.where(denom != 0.0, denom, tf.ones_like(denom))
    alphas = tf.where(denom != 0.0, grads_2 / safe, tf.zeros_like(denom))
    return tf.reduce_sum(alphas * tf.nn.relu(grads), axis=(1, 2), keepdims=True)


def normalise_maps(maps: np.ndarray) -> np.ndarray:
    """Divide each map by its max; all-zero maps stay zero (no NaN)."""
    peak = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0).astype(np.float32)


def gradcam(
    model: keras.Model,
    images: np.ndarray,
    class_indices: np.ndarray | None = None,
    *,
    layer_name: str | None = None,
    method: str = "gradcam",
    batch_size: int = 32,
) -> np.ndarray:
    """Heatmaps (N, H, W) in [0, 1] for the class logit, upsampled to the input size.

    ``class_indices`` defaults to the predicted class of each image.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    images = as_image_batch(images)
    if class_indices is not None and len(class_indices) != len(images):
        raise ValueError(f"got {len(class_indices)} class indices for {len(images)} images")
    grad_model = _grad_model(model, images, layer_name or last_conv_layer_name(model))
    height, width = images.shape[1:3]
    maps = []
    for start in range(0, len(images), batch_size):
        batch = tf.convert_to_tensor(images[start : start + batch_size])
        with tf.GradientTape() as tape:
            conv, logits = grad_model([batch], training=False)
            if class_indices is None:
                idx = tf.argmax(logits, axis=1)
            else:
                idx = tf.constant(np.asarray(class_indices)[start : start + batch_size], tf.int64)
            # Samples are independent, so the gradient of the sum is per-sample.
            score = tf.reduce_sum(tf.gather(logits, idx, axis=1, batch_dims=1))
        grads = tape.gradient(score, conv)
        cam = tf.nn.relu(tf.reduce_sum(_channel_weights(conv, grads, method) * conv, axis=-1))
        cam = tf.image.resize(cam[..., None], (height, width), method="bilinear")
        maps.append(cam[..., 0].numpy())
    if not maps:
        return np.zeros((0, height, width), np.float32)
    return normalise_maps(np.maximum(np.concatenate(maps), 0.0))


def random_heatmaps(
    rng: np.random.Generator, shape: tuple[int, int, int], *, smooth: int = 8
) -> np.ndarray:
    """Smooth random maps in [0, 1]: uniform noise on a coarse grid, bilinearly upsampled."""
    n, height, width = shape
    coarse = (max(2, math.ceil(height / smooth)), max(2, math.ceil(width / smooth)))
    noise = rng.random((n, *coarse, 1), dtype=np.float32)
    maps = tf.image.resize(noise, (height, width), method="bilinear").numpy()[..., 0]
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return normalise_maps(maps)
