"""The one image blur of the project, shared by preprocessing, explanations and phantoms."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a 2-D image, float32 out; edges repeated, kernel cut at 3 sigma.

    Used to suppress pixel noise before thresholding (head box, brain mask), to make the
    blurred canvas of deletion / insertion, and for the phantoms' scanner blur.
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    return ndimage.gaussian_filter(image, sigma, mode="nearest", truncate=3.0)
