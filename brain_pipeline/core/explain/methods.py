"""Every explanation method the project offers, behind one call: `explanation_maps`.

* "gradcam", "gradcam++": class-activation maps at the last convolutional block
  (`heatmaps.gradcam`; Selvaraju et al., Chattopadhyay et al.);
* "gradcam-early": Grad-CAM at the last block of the previous, finer grid (twice the last
  block's resolution in the default CNN): sharper maps from less class-specific features;
* "occlusion" (perturbation family; Zeiler & Fergus): a square patch at a time is replaced
  by the blurred image (the fill that deletion uses, so a patch reads as "detail removed",
  not as black fluid); a pixel's heat is the mean drop of the class logit over the patches
  that cover it;
* "integrated-gradients" (path-attribution family; Sundararajan et al.): the class logit's
  gradients averaged along the straight path from the blurred image to the image, times
  their difference; the positive part, lightly smoothed into a map.

Every method returns (N, H, W) maps in [0, 1] at the input's size, for the class logit of
`class_indices` (default: each image's predicted class).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from brain_pipeline.core.explain.faithfulness import blurred_canvas
from brain_pipeline.core.explain.heatmaps import (
    CONV_TYPES,
    as_image_batch,
    conv_block_output,
    gradcam,
    last_conv_layer_name,
    logits_output,
    model_inputs,
    normalise_maps,
)
from brain_pipeline.core.explain.method_names import DEFAULT_METHOD, METHODS
from brain_pipeline.core.imaging.filters import gaussian_blur


def explanation_maps(
    model: keras.Model,
    images: np.ndarray,
    class_indices: np.ndarray | None = None,
    *,
    method: str = DEFAULT_METHOD,
    layer_name: str | None = None,
) -> np.ndarray:
    """(N, H, W) maps in [0, 1] of `method` (one of METHODS). `layer_name` chooses the
    layer of the Grad-CAM methods (default: theirs); the other methods have none."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    images = as_image_batch(images)
    if class_indices is not None and len(class_indices) != len(images):
        raise ValueError(f"got {len(class_indices)} class indices for {len(images)} images")
    if method in ("gradcam", "gradcam++"):
        return gradcam(model, images, class_indices, layer_name=layer_name, method=method)
    if method == "gradcam-early":
        layer = layer_name or earlier_conv_layer_name(model)
        return gradcam(model, images, class_indices, layer_name=layer)
    if method == "occlusion":
        return occlusion_maps(model, images, class_indices)
    return integrated_gradients(model, images, class_indices)


def earlier_conv_layer_name(model: keras.Model) -> str:
    """The output of the last convolutional block on a finer grid than the last block's
    (the block before the last downsampling); in a model that never downsamples, of the
    block before the last."""
    last = model.get_layer(last_conv_layer_name(model))
    layers = model.layers
    earlier = [
        position
        for position in range(layers.index(last))
        if isinstance(layers[position], CONV_TYPES)
    ]
    finer = [p for p in earlier if layers[p].output.shape[1] > last.output.shape[1]]
    if not earlier:
        raise ValueError(f"model {model.name!r} has no convolution before {last.name!r}")
    return conv_block_output(layers, (finer or earlier)[-1])


def _logits_model(model: keras.Model, images: np.ndarray) -> keras.Model:
    return keras.Model(model_inputs(model, images), logits_output(model))


def _logits(logits_model: keras.Model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    if not len(images):
        return np.zeros((0, logits_model.output.shape[-1]), np.float32)
    parts = [
        logits_model(tf.convert_to_tensor(images[start : start + batch_size]), training=False)
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate([np.asarray(part) for part in parts])


def _targets(logits: np.ndarray, class_indices: np.ndarray | None) -> np.ndarray:
    return logits.argmax(axis=1) if class_indices is None else np.asarray(class_indices)


def _blurred(image: np.ndarray) -> np.ndarray:
    """(H, W, 1) -> deletion's blurred canvas (faithfulness.blurred_canvas), (H, W, 1)."""
    return blurred_canvas(image[..., 0])[..., None]


def _positions(side: int, patch: int, stride: int) -> list[int]:
    """Patch starts that cover every pixel of a side."""
    starts = list(range(0, max(side - patch, 0) + 1, stride))
    if starts[-1] + patch < side:
        starts.append(side - patch)
    return starts


def occlusion_maps(
    model: keras.Model, images: np.ndarray, class_indices: np.ndarray | None = None
) -> np.ndarray:
    """Occlusion maps: patches of 1/8 of the image side, moved by half a patch."""
    images = as_image_batch(images)
    logits_model = _logits_model(model, images)
    height, width = images.shape[1:3]
    patch = max(2, height // 8)
    corners = [
        (top, left)
        for top in _positions(height, patch, patch // 2)
        for left in _positions(width, patch, patch // 2)
    ]
    logits = _logits(logits_model, images)
    targets = _targets(logits, class_indices)
    base = logits[np.arange(len(images)), targets]
    maps = []
    for image, target, reference in zip(images, targets, base, strict=True):
        fill, occluded = _blurred(image), np.repeat(image[None], len(corners), axis=0)
        for k, (top, left) in enumerate(corners):
            window = (slice(top, top + patch), slice(left, left + patch))
            occluded[k][window] = fill[window]
        drops = reference - _logits(logits_model, occluded)[:, target]
        heat, cover = np.zeros((height, width)), np.zeros((height, width))
        for drop, (top, left) in zip(drops, corners, strict=True):
            heat[top : top + patch, left : left + patch] += drop
            cover[top : top + patch, left : left + patch] += 1
        maps.append(np.maximum(heat / cover, 0.0))
    return normalise_maps(np.asarray(maps, np.float32).reshape(len(images), height, width))


def integrated_gradients(
    model: keras.Model,
    images: np.ndarray,
    class_indices: np.ndarray | None = None,
    *,
    steps: int = 32,
) -> np.ndarray:
    """Integrated-gradients maps from the blurred image (`steps` midpoints of the path)."""
    images = as_image_batch(images)
    logits_model = _logits_model(model, images)
    targets = _targets(_logits(logits_model, images), class_indices)
    alphas = ((np.arange(steps) + 0.5) / steps).astype(np.float32)[:, None, None, None]
    maps = []
    for image, target in zip(images, targets, strict=True):
        baseline = _blurred(image)
        path = tf.convert_to_tensor(baseline[None] + alphas * (image - baseline)[None])
        with tf.GradientTape() as tape:
            tape.watch(path)
            score = tf.reduce_sum(logits_model(path, training=False)[:, int(target)])
        mean_gradient = tape.gradient(score, path).numpy().mean(axis=0)
        attribution = np.maximum(((image - baseline) * mean_gradient).sum(axis=-1), 0.0)
        maps.append(gaussian_blur(attribution, sigma=max(1.0, image.shape[0] / 48)))
    if not maps:
        return np.zeros((0, *images.shape[1:3]), np.float32)
    return normalise_maps(np.maximum(np.asarray(maps, np.float32), 0.0))
