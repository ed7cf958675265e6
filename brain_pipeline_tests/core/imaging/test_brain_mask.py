"""The brain mask: morphology on hand-made shapes, skull rings, and the phantoms' true brains."""

from __future__ import annotations

import numpy as np
import pytest

from brain_pipeline.core.imaging.brain_mask import (
    brain_mask,
    dilate,
    erode,
    estimate_brain_mask,
    fill_holes,
    largest_component,
)
from brain_pipeline.core.imaging.preprocessing import Preprocessing
from brain_pipeline.synthetic.phantoms import render_phantom

# ---------------------------------------------------------------- hand-made shapes


def _disc(size: int, radius: float, centre: tuple[float, float] | None = None) -> np.ndarray:
    cy, cx = centre if centre is not None else ((size - 1) / 2, (size - 1) / 2)
    yy, xx = np.mgrid[:size, :size]
    return np.hypot(yy - cy, xx - cx) <= radius


def test_fill_holes_fills_a_ring_but_not_what_reaches_the_border():
    ring = _disc(21, 8) & ~_disc(21, 4)
    filled = fill_holes(ring)
    assert np.array_equal(filled, _disc(21, 8))
    # A "ring" cut open to the border (a C shape) has no hole: nothing changes.
    open_ring = ring.copy()
    open_ring[10, 10:] = False
    assert np.array_equal(fill_holes(open_ring), open_ring)
    # A hole touching the image edge is background outside, not a hole.
    frame = np.ones((8, 8), bool)
    frame[3:5, 0:3] = False
    assert np.array_equal(fill_holes(frame), frame)


def test_largest_component_keeps_the_biggest_blob_only():
    mask = _disc(40, 10, (12, 12)) | _disc(40, 5, (30, 30))
    kept = largest_component(mask)
    assert np.array_equal(kept, _disc(40, 10, (12, 12)))
    assert not largest_component(np.zeros((5, 5), bool)).any()
    # Components are 4-connected: blobs touching only at a corner are two regions.
    diagonal = np.zeros((6, 6), bool)
    diagonal[0:3, 0:3] = True
    diagonal[3:5, 3:5] = True
    assert largest_component(diagonal).sum() == 9


def test_erode_and_dilate_grow_an_octagon_and_treat_outside_as_background():
    point = np.zeros((9, 9), bool)
    point[4, 4] = True
    cross = dilate(point, 1)
    assert cross.sum() == 5 and cross[3, 4] and cross[4, 3] and not cross[3, 3]
    octagon = dilate(point, 2)  # cross, then square: 5 x 5 without its corners
    assert octagon.sum() == 21 and octagon[2:7, 2:7].sum() == 21 and not octagon[2, 2]
    assert np.array_equal(dilate(point, 0), point)
    assert np.array_equal(erode(octagon, 2), point)  # the same octagon shrinks back
    # The image's edge is background: a full image loses its one-pixel frame.
    eroded = erode(np.ones((6, 6), bool), 1)
    assert eroded.sum() == 16 and eroded[1:5, 1:5].all()


# ---------------------------------------------------------------- model inputs


def _ring_phantom(ring_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """64x64 'head': bright skull ring, brain disc (0.5) with a dark centre 'ventricle'."""
    yy, xx = np.mgrid[:64, :64]
    dist = np.hypot(yy - 31.5, xx - 31.5)
    brain_radius = 22 - ring_gap
    image = np.where(dist <= brain_radius, 0.5, 0.0)
    image[dist <= 4] = 0.0  # dark "ventricle": a hole that must be filled
    ring = (dist > 22) & (dist <= 25)
    image[ring] = 1.0
    return image.astype(np.float32), ring


@pytest.mark.parametrize("ring_gap", [0, 3])
def test_brain_mask_excludes_skull_ring_and_keeps_centre(ring_gap):
    image, ring = _ring_phantom(ring_gap)
    mask = estimate_brain_mask(image[..., None])
    assert mask.shape == (64, 64) and mask.dtype == bool
    assert not mask[ring].any()
    assert mask[28:36, 28:36].all()


def test_brain_mask_skull_stripped_and_blank():
    yy, xx = np.mgrid[:64, :64]
    dist = np.hypot(yy - 31.5, xx - 31.5)
    image = np.where(dist <= 24, 0.6, 0.0).astype(np.float32)
    image[5:8, 5:8] = 0.9  # small bright speck: not the largest region
    mask = estimate_brain_mask(image)
    assert mask[32, 32] and not mask[dist > 21].any()
    assert mask.sum() > 0.6 * (dist <= 24).sum()
    assert not estimate_brain_mask(np.zeros((16, 16))).any()
    with pytest.raises(ValueError, match="2-D image"):
        estimate_brain_mask(np.zeros((2, 16, 16)))


def _phantom_inputs(style: str, preprocessing: Preprocessing, n: int = 2):
    """(model input, true brain mask in its geometry) for n phantoms of one source style."""
    rng = np.random.default_rng(7)
    target, grade = (
        ("alzheimer_brain", "MildDemented") if style == "alzheimer" else ("tumor_brain", None)
    )
    for _ in range(n):
        phantom = render_phantom(rng, target, style, grade=grade, size=(160, 160))
        yield preprocessing.apply(phantom.image, phantom.brain_mask)


def _recall_precision(mask: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    overlap = (mask & truth).sum()
    return overlap / truth.sum(), overlap / max(mask.sum(), 1)


@pytest.mark.parametrize("intensity", ["equalise", "percentile"])
@pytest.mark.parametrize(
    ("style", "min_recall", "min_precision"),
    [("navoneel", 0.95, 0.8), ("preetviradiya", 0.95, 0.8), ("alzheimer", 0.6, 0.95)],
)
def test_brain_mask_matches_the_phantoms_true_brain(style, min_recall, min_precision, intensity):
    # The generator knows each phantom's brain; the estimate must find most of it in model
    # inputs of either intensity mode (an Otsu split found about half on equalised ones).
    for tensor, truth in _phantom_inputs(
        style, Preprocessing(96, skull_strip=False, intensity=intensity)
    ):
        recall, precision = _recall_precision(estimate_brain_mask(tensor), truth)
        assert recall >= min_recall and precision >= min_precision


@pytest.mark.parametrize(
    ("style", "min_recall", "min_precision"),
    [("navoneel", 0.95, 0.8), ("alzheimer", 0.6, 0.95)],
)
def test_large_inputs_are_masked_at_full_resolution(style, min_recall, min_precision):
    # No reduced copy any more: at 384 px the mask has the image's shape, is as close to the
    # true brain as at 96 px, and its outline is not made of 2 x 2 blocks.
    for tensor, truth in _phantom_inputs(style, Preprocessing(384, skull_strip=False), n=1):
        mask = estimate_brain_mask(tensor)
        assert mask.shape == truth.shape == (384, 384)
        recall, precision = _recall_precision(mask, truth)
        assert recall >= min_recall and precision >= min_precision
        assert not np.array_equal(mask, mask[::2, ::2].repeat(2, axis=0).repeat(2, axis=1))
        # Odd sides need no padding to whole blocks either.
        assert estimate_brain_mask(np.pad(tensor[..., 0], ((0, 1), (0, 3)))).shape == (385, 387)


@pytest.mark.parametrize("intensity", ["equalise", "percentile"])
@pytest.mark.parametrize(
    ("style", "min_recall", "min_precision"),
    [("navoneel", 0.95, 0.8), ("preetviradiya", 0.95, 0.8), ("alzheimer", 0.7, 0.95)],
)
def test_brain_mask_of_skull_stripped_inputs(style, min_recall, min_precision, intensity):
    # A stripped input's brain is what stripping kept; estimating it again would erode the
    # cortex a second time. (The Alzheimer style has no skull, so stripping itself takes
    # its outer band: the lower recall bound.)
    stripped = Preprocessing(96, skull_strip=True, intensity=intensity)
    for tensor, truth in _phantom_inputs(style, stripped):
        recall, precision = _recall_precision(brain_mask(tensor, skull_stripped=True), truth)
        assert recall >= min_recall and precision >= min_precision
        eroded_twice, _ = _recall_precision(brain_mask(tensor), truth)
        assert eroded_twice < recall - 0.15
