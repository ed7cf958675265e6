"""Rough brain masks of model inputs (skull stripping, explanation plausibility).

The mask is the head (lightly blurred pixels above a low level, largest region, holes filled)
eroded by a band that puts the skull ring and the head's border outside it. Connected
components, hole filling and the morphology are scipy.ndimage's; the erosion / dilation
alternates a cross and a square step, which grows an octagon of the given radius.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from brain_pipeline.core.imaging.filters import gaussian_blur

# A pixel belongs to the head above this fraction of the (lightly blurred) image's maximum.
HEAD_LEVEL = 0.1
# The noise blur before thresholding: the sigma of a 3 x 3 box, sqrt(2/3).
HEAD_BLUR_SIGMA = float(np.sqrt(2.0 / 3.0))
_CROSS = ndimage.generate_binary_structure(2, 1)
_SQUARE = ndimage.generate_binary_structure(2, 2)


def _as_2d(image: np.ndarray) -> np.ndarray:
    """One image as a float32 (H, W) array; (H, W, 1) inputs are squeezed."""
    image = np.asarray(image, np.float32).squeeze()
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got {np.shape(image)}")
    return image


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of ``mask`` (all False if it is empty)."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros(np.shape(mask), bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0  # the background
    return labels == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background region that does not reach the border filled (e.g.
    dark ventricles inside the head)."""
    return ndimage.binary_fill_holes(mask)


def _octagon_steps(mask: np.ndarray, radius: int, operation) -> np.ndarray:
    mask = np.asarray(mask, bool)
    for step in range(radius):
        # Outside the image counts as background (border_value 0) for both operations.
        mask = operation(mask, structure=_SQUARE if step % 2 else _CROSS)
    return mask


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by an octagon of ``radius`` px; outside the image is background."""
    return _octagon_steps(mask, radius, ndimage.binary_erosion)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by an octagon of ``radius`` px (the inverse of erode)."""
    return _octagon_steps(mask, radius, ndimage.binary_dilation)


def estimate_brain_mask(image: np.ndarray, *, border_fraction: float = 0.06) -> np.ndarray:
    """Rough brain mask (H, W) bool: the head (lightly blurred pixels above HEAD_LEVEL of the
    maximum, largest region, holes filled), eroded by a band.

    The erosion band (``border_fraction`` of the image size) puts the skull ring / head
    border outside the mask. On the phantoms, whose true brain masks are known, it keeps
    about 0.99 of the brain with 0.1 of skull for skull-on styles, and 0.72 of the brain
    for skull-stripped ones (their cortex is at the border). A low fixed level rather than
    an Otsu split: on equalised images Otsu cuts the head's histogram in half.
    """
    image = _as_2d(image)
    if image.max() <= image.min():
        return np.zeros(image.shape, bool)
    smooth = gaussian_blur(image - image.min(), HEAD_BLUR_SIGMA)
    head = fill_holes(largest_component(smooth > HEAD_LEVEL * float(smooth.max())))
    band = max(1, round(border_fraction * max(image.shape)))
    return erode(head, band)


def brain_mask(image: np.ndarray, *, skull_stripped: bool = False) -> np.ndarray:
    """The brain (H, W) bool of a model input.

    A skull-stripped input's brain is what the stripping kept: its non-zero region (largest
    region, holes filled). The stripping already cut the skull away with
    ``estimate_brain_mask``, so eroding that estimate's band a second time would take the
    brain's cortex: on stripped phantoms of the skull-on styles that keeps 0.65 to 0.75 of
    the true brain, this mask 0.97 to 0.99 (precision 0.87 or more). Other inputs get
    ``estimate_brain_mask``.
    """
    if not skull_stripped:
        return estimate_brain_mask(image)
    return fill_holes(largest_component(_as_2d(image) > 0))
