"""Heatmap overlays and the Grad-CAM gallery figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from brain_pipeline.core.plots import class_distribution, image_sizes_plot, overlay, render_gallery


def test_overlay_is_rgb_uint8():
    image = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8, 1)
    heat = np.zeros((8, 8), np.float32)
    heat[2, 3] = 1.0
    rgb = overlay(image, heat)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert not np.array_equal(rgb[2, 3], rgb[2, 4])  # the hot pixel is coloured
    with pytest.raises(ValueError):
        overlay(image, np.zeros((4, 4)))


def test_render_gallery(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((6, 32, 32, 1)).astype(np.float32)
    maps = rng.random((6, 32, 32)).astype(np.float32)
    titles = [f"true: class_{y} / pred: class_{y} (0.93)" for y in (0, 1, 0, 1, 0, 1)]
    fig = render_gallery(images, maps, titles, columns=4, suptitle="synthetic")
    assert isinstance(fig, Figure)
    assert len([ax for ax in fig.axes if ax.images]) == 6
    assert any(ax.get_ylabel() == "Grad-CAM relevance" for ax in fig.axes)
    fig.savefig(tmp_path / "gallery.png")
    assert (tmp_path / "gallery.png").stat().st_size > 1000

    empty = render_gallery(np.zeros((0, 32, 32)), np.zeros((0, 32, 32)), [])
    assert any("no images" in t.get_text() for t in empty.texts)
    with pytest.raises(ValueError, match="same length"):
        render_gallery(images, maps[:2], titles)
    # Lesion outlines: a contour on each tile that has a mask, none elsewhere.
    mask = np.zeros((32, 32), bool)
    mask[10:20, 8:16] = True
    outlined = render_gallery(images, maps, titles, outlines=[mask, None, mask, None, None, None])
    tiles = [ax for ax in outlined.axes if ax.images]
    assert [len(ax.collections) > 0 for ax in tiles] == [True, False, True, False, False, False]
    with pytest.raises(ValueError, match="same length"):
        render_gallery(images, maps, titles, outlines=[mask])


def test_manifest_plots_of_a_root_where_every_file_was_rejected() -> None:
    # The manifest of one unreadable file: no width, height, format or mode, no class.
    manifest = pd.DataFrame(
        {
            "dataset": ["mydata"],
            "width": [None],
            "height": [None],
            "format": [None],
            "mode": [None],
            "target_class": ["tumor_brain"],
        }
    )
    sizes = image_sizes_plot(manifest)
    assert any("no readable image files" in t.get_text() for t in sizes.axes[0].texts)
    counts = pd.crosstab(manifest["dataset"], manifest["target_class"])
    assert isinstance(class_distribution(counts, "files"), Figure)
