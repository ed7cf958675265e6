"""Explanation maps drawn on the original image, at its own resolution.

The model sees a 96 px square cut around the head; a map of that square, drawn on it, hides
the detail a reader needs to judge it (a small lesion spans a few pixels). Here the map is
carried back through the resize, the padding and the head crop onto the image as it was
read, and a lesion mask of the same image, where one exists, is outlined on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from brain_pipeline.core.imaging.grayscale import to_grayscale
from brain_pipeline.core.imaging.preprocessing import map_to_image_geometry
from brain_pipeline.core.plots import render_gallery

# Inches per image side: about one screen pixel per image pixel at the figures' 110 dpi,
# within bounds that keep a tiny or a huge image readable.
_DPI, _MIN_INCHES, _MAX_INCHES = 110, 2.4, 8.0


@dataclass(frozen=True)
class OriginalView:
    """An image as read (grayscale in [0, 1]), its map in the same pixels, and the lesion
    mask to outline (or None)."""

    gray: np.ndarray
    heat: np.ndarray
    outline: np.ndarray | None = None


def original_view(
    image: Image.Image, heatmap: np.ndarray, lesion_mask: np.ndarray | None = None
) -> OriginalView:
    """The map of the model input (`heatmap`) on `image`'s own pixels; `lesion_mask` must be
    the image's size (a mask of another image is refused, naming both sizes)."""
    gray = np.asarray(to_grayscale(image), np.float32) / 255.0
    if lesion_mask is not None and np.shape(lesion_mask) != gray.shape:
        raise ValueError(
            f"the lesion mask is {np.shape(lesion_mask)[1]}x{np.shape(lesion_mask)[0]} but "
            f"the image is {gray.shape[1]}x{gray.shape[0]}: not this image's mask"
        )
    outline = None if lesion_mask is None else np.asarray(lesion_mask, bool)
    return OriginalView(gray, map_to_image_geometry(image, heatmap), outline)


def render_original_overlays(
    views: Sequence[OriginalView],
    titles: list[str],
    *,
    columns: int = 4,
    suptitle: str = "",
    method: str = "gradcam",
) -> Figure:
    """A grid of `views`, each tile as large as its image (within bounds)."""
    side = max((max(view.gray.shape) for view in views), default=96)
    return render_gallery(
        [view.gray for view in views],
        [view.heat for view in views],
        titles,
        columns=columns,
        suptitle=suptitle,
        outlines=[view.outline for view in views],
        tile_inches=float(np.clip(side / _DPI, _MIN_INCHES, _MAX_INCHES)),
        colour_label=f"{method} relevance",
    )
