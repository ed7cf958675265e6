"""How far heatmaps can be trusted: faithfulness and the randomised-weights sanity check.

* faithfulness: deletion / insertion AUC (Petsiuk et al., RISE), compared by the caller
  with random maps on the same images (deletion fills in the blurred image, see
  DELETION_FILLS);
* sanity: do maps change when the weights are randomised (Adebayo et al.)? Measured by the
  rank correlation and SSIM of the maps before and after.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from brain_pipeline.core.explain.heatmaps import as_image_batch
from brain_pipeline.core.imaging.filters import gaussian_blur
from brain_pipeline.core.model.training import predict_probabilities

# How deletion removes a pixel. "blur" (the default) puts the blurred image's value there,
# the canvas insertion starts from: the detail goes, the local intensity stays. "zero" is
# RISE's black fill; in an MRI slice black is cerebrospinal fluid, so zeroed patches read as
# dark lesions, widened sulci or ventricles (disease evidence) rather than as missing
# information (docs/decisions.md, "Deletion fill").
DELETION_FILLS = ("blur", "zero")


def blurred_canvas(image: np.ndarray) -> np.ndarray:
    """What insertion starts from and blurred deletion fills in (RISE's blur)."""
    return gaussian_blur(image, sigma=max(1.0, image.shape[0] / 16))


def _perturbation_curves(
    image: np.ndarray, heatmap: np.ndarray, steps: int, deletion_fills: tuple[str, ...]
) -> np.ndarray:
    """(1 + len(deletion_fills), steps+1, H, W): the insertion sequence, then one deletion
    sequence per fill, most relevant pixels first."""
    flat = image.ravel()
    rank = np.empty(flat.size, np.int64)
    rank[np.argsort(-heatmap.ravel(), kind="stable")] = np.arange(flat.size)
    counts = np.round(np.linspace(0, flat.size, steps + 1)).astype(np.int64)
    changed = rank[None, :] < counts[:, None]
    # Insertion starts from a blurred image (RISE), so it is not just "any signal".
    canvas = blurred_canvas(image).ravel()
    fills = {"blur": canvas[None, :], "zero": np.float32(0.0)}
    sequences = [np.where(changed, flat[None, :], canvas[None, :])]
    sequences += [np.where(changed, fills[fill], flat[None, :]) for fill in deletion_fills]
    return np.stack(sequences).reshape(len(sequences), steps + 1, *image.shape)


def _auc(curve: np.ndarray) -> np.ndarray:
    """Trapezoid area under curves sampled at evenly spaced x in [0, 1] (last axis)."""
    return (curve[..., 1:] + curve[..., :-1]).sum(axis=-1) / (2 * (curve.shape[-1] - 1))


def perturbation_aucs(
    model: keras.Model,
    images: np.ndarray,
    heatmaps: np.ndarray,
    class_indices: np.ndarray,
    *,
    deletion_fills: tuple[str, ...] = ("blur",),
    steps: int = 20,
    max_batch_images: int = 4096,
) -> dict[str, np.ndarray]:
    """Per-image AUCs under "insertion" and "deletion_<fill>" for each of ``deletion_fills``,
    all from one pass of the model over the perturbed images.

    Curves are the model's probability of ``class_indices`` at steps+1 fractions of the
    pixels, most relevant first. Deletion replaces them with the fill (see DELETION_FILLS;
    a lower AUC is more faithful); insertion reveals them on the blurred image (higher is
    better).
    """
    unknown = [fill for fill in deletion_fills if fill not in DELETION_FILLS]
    if unknown or not deletion_fills:
        raise ValueError(f"deletion_fill must be one of {DELETION_FILLS}, got {deletion_fills!r}")
    images = as_image_batch(images)[..., 0]
    heatmaps = np.asarray(heatmaps, np.float32)
    class_indices = np.asarray(class_indices, np.int64)
    if heatmaps.shape != images.shape or len(class_indices) != len(images):
        raise ValueError("images, heatmaps and class_indices must describe the same N images")
    names = ["insertion", *(f"deletion_{fill}" for fill in deletion_fills)]
    # Chunk over images so each model.predict call sees a big but bounded batch.
    chunk = max(1, max_batch_images // (len(names) * (steps + 1)))
    aucs: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, len(images), chunk):
        sl = slice(start, start + chunk)
        batch = np.stack(
            [
                _perturbation_curves(i, h, steps, deletion_fills)
                for i, h in zip(images[sl], heatmaps[sl], strict=True)
            ]
        )
        probs = predict_probabilities(model, batch.reshape(-1, *images.shape[1:], 1), 256)
        probs = probs.reshape(*batch.shape[:3], -1)
        picked = np.take_along_axis(probs, class_indices[sl, None, None, None], axis=-1)[..., 0]
        for k, name in enumerate(names):
            aucs[name].append(_auc(picked[:, k]))
    return {
        name: np.concatenate(parts) if parts else np.zeros(0, np.float32)
        for name, parts in aucs.items()
    }


def _reinitialiser(layer: keras.layers.Layer, weight_name: str, seed: int) -> Any | None:
    # kernel -> kernel_initializer, depthwise_kernel -> depthwise_initializer, ...
    for attr in (
        f"{weight_name}_initializer",
        f"{weight_name.removesuffix('_kernel')}_initializer",
    ):
        initializer = getattr(layer, attr, None)
        if isinstance(initializer, keras.initializers.Initializer):
            config = initializer.get_config()
            if "seed" in config:
                config["seed"] = seed
            return initializer.__class__.from_config(config)
    return None


def randomize_weights(model: keras.Model, seed: int) -> keras.Model:
    """Clone of ``model`` with every layer's weights re-drawn from its initialisers.

    The end state of cascading randomisation (Adebayo et al. 2018): all layers
    with kernels, top to bottom, re-initialised. ``model`` itself is untouched.
    """
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    fallback = keras.initializers.GlorotUniform
    for layer_index, layer in enumerate(reversed(clone.layers)):
        for weight_index, weight in enumerate(layer.weights):
            weight_seed = seed * 1_000_003 + layer_index * 1_009 + weight_index
            init = _reinitialiser(layer, weight.name, weight_seed)
            if init is None and len(weight.shape) >= 2:
                init = fallback(seed=weight_seed)
            if init is not None:
                weight.assign(init(tuple(weight.shape), dtype=weight.dtype))
    return clone


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2.0)[inverse.ravel()]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (flattened); 0.0 if either is constant."""
    ra, rb = _ranks(np.ravel(a)), _ranks(np.ravel(b))
    if ra.size != rb.size:
        raise ValueError("maps must have the same number of elements")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over all 7x7 uniform windows (data range 1, sample covariance)."""
    a, b = np.asarray(a, np.float64).squeeze(), np.asarray(b, np.float64).squeeze()
    if a.shape != b.shape or a.ndim != 2 or min(a.shape) < 7:
        raise ValueError(f"need two equal 2-D maps of at least 7x7, got {a.shape} and {b.shape}")
    wa = np.lib.stride_tricks.sliding_window_view(a, (7, 7))
    wb = np.lib.stride_tricks.sliding_window_view(b, (7, 7))
    mean_a, mean_b = wa.mean(axis=(-2, -1)), wb.mean(axis=(-2, -1))
    correction = 49 / 48  # sample covariance, as in skimage's default
    var_a = wa.var(axis=(-2, -1)) * correction
    var_b = wb.var(axis=(-2, -1)) * correction
    cov = ((wa * wb).mean(axis=(-2, -1)) - mean_a * mean_b) * correction
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mean_a * mean_b + c1) * (2 * cov + c2)
    den = (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
    return float((num / den).mean())
