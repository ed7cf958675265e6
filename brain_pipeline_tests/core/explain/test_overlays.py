"""Maps drawn on the images as read: the geometry carried back, the lesion outlined."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from brain_pipeline.core.explain.gallery import overlays_of
from brain_pipeline.core.explain.overlays import original_view, render_original_overlays
from brain_pipeline.core.imaging.preprocessing import mask_to_model_geometry


def _slice(width: int, height: int) -> tuple[Image.Image, np.ndarray]:
    yy, xx = np.mgrid[:height, :width]
    head = ((yy - height / 2) / (height / 2.5)) ** 2 + ((xx - width / 2) / (width / 2.5)) ** 2 < 1
    lesion = ((yy - height * 0.4) ** 2 + (xx - width * 0.6) ** 2) < (min(width, height) / 10) ** 2
    array = np.where(head, 120, 0) + np.where(lesion, 100, 0)
    return Image.fromarray(array.astype(np.uint8)), lesion


def test_the_view_is_the_image_as_read_with_the_map_on_its_pixels():
    image, lesion = _slice(300, 240)
    heat = mask_to_model_geometry(image, lesion, 96).astype(np.float32)
    view = original_view(image, heat, lesion)
    assert view.gray.shape == view.heat.shape == (240, 300)
    # The heat of the lesion's model-input pixels lands back on the lesion.
    assert view.heat[lesion].mean() > 0.8 and view.heat[~lesion].mean() < 0.05
    with pytest.raises(ValueError, match="mask is 30x20 but the image is 300x240"):
        original_view(image, heat, np.zeros((20, 30), bool))


def test_galleries_draw_each_image_at_its_own_size_with_its_outline():
    small, small_lesion = _slice(120, 100)
    large, large_lesion = _slice(400, 360)
    originals = {0: (small, small_lesion), 1: (large, None)}
    maps = np.stack([mask_to_model_geometry(large, large_lesion, 48).astype(np.float32)] * 2)
    figure = overlays_of(
        np.zeros((2, 48, 48, 1)), [0, 1], maps, ["a", "b"], "t", originals.__getitem__, "occlusion"
    )
    tiles = [ax for ax in figure.axes if ax.images]
    assert [ax.images[0].get_array().shape[:2] for ax in tiles] == [(100, 120), (360, 400)]
    assert len(tiles[0].collections) > 0 and len(tiles[1].collections) == 0  # one outline
    assert figure.get_size_inches()[0] > 2 * 400 / 110  # two tiles of the larger image's size
    colour_bar = [ax for ax in figure.axes if not ax.images][-1]
    assert colour_bar.get_ylabel() == "occlusion relevance"
    # Without originals: the model inputs, as before.
    plain = overlays_of(np.zeros((2, 48, 48, 1)), [0], maps[:1], ["a"], "t", None, "gradcam")
    assert [ax for ax in plain.axes if ax.images][0].images[0].get_array().shape[:2] == (48, 48)
    empty = render_original_overlays([], [], suptitle="none")
    assert empty.texts
