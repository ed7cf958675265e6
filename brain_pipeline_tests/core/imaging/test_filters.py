"""The shared Gaussian blur."""

from __future__ import annotations

import numpy as np
import pytest

from brain_pipeline.core.imaging.filters import gaussian_blur


def test_gaussian_blur_keeps_flat_images_and_the_mean_and_spreads_a_point():
    flat = np.full((9, 12), 0.25, np.float32)
    np.testing.assert_allclose(gaussian_blur(flat, 2.0), flat, atol=1e-7)
    point = np.zeros((21, 21), np.float32)
    point[10, 10] = 1.0
    blurred = gaussian_blur(point, 1.5)
    assert blurred.dtype == np.float32 and blurred.shape == point.shape
    assert blurred.sum() == pytest.approx(1.0, abs=1e-6)  # far from the edges: nothing lost
    np.testing.assert_allclose(blurred, blurred.T, atol=1e-7)
    np.testing.assert_allclose(blurred, blurred[::-1], atol=1e-7)
    # A Gaussian of sigma 1.5: the centre keeps 1 / (2 pi sigma^2) of the point.
    assert blurred[10, 10] == pytest.approx(1 / (2 * np.pi * 1.5**2), rel=0.02)
    assert blurred[10, 15] > 0.0 and blurred[10, 16] == 0.0  # cut at 3 sigma, 4.5 -> 5 px


def test_gaussian_blur_repeats_the_edges_and_validates():
    ramp = np.tile(np.arange(10, dtype=np.float32), (6, 1))
    blurred = gaussian_blur(ramp, 1.0)
    np.testing.assert_allclose(blurred[:, 3:7], ramp[:, 3:7], atol=1e-5)  # linear inside
    assert blurred[0, 0] > 0.0  # edge repeated, not zero-padded
    with pytest.raises(ValueError, match="2-D"):
        gaussian_blur(np.zeros((2, 3, 3)), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(np.zeros((3, 3)), 0.0)
