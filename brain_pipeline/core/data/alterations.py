"""How public downloads re-save a scan: the alterations a re-saved copy may have undergone.

Used to measure the duplicate definition: `benchmarks/duplicates.py` on real images, and the
balanced index's own self-test on a sample of its images.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

Alteration = Callable[[Image.Image], Image.Image]


def gamma(image: Image.Image, value: float) -> Image.Image:
    return image.point(lambda v: round(255 * (v / 255) ** value))


def window(image: Image.Image, low: int, high: int) -> Image.Image:
    return image.point(lambda v: round(255 * min(max((v - low) / (high - low), 0.0), 1.0)))


def crop(image: Image.Image, fraction: float, rng: np.random.Generator) -> Image.Image:
    """Cut `fraction` of the width and height at a random offset, resized back."""
    width, height = image.size
    dx, dy = int(width * fraction), int(height * fraction)
    left, top = int(rng.integers(0, dx + 1)), int(rng.integers(0, dy + 1))
    return image.crop((left, top, left + width - dx, top + height - dy)).resize(image.size)


def zoom_out(image: Image.Image, fraction: float) -> Image.Image:
    """Pad with black by `fraction` of each side (the scan shrinks within a larger frame)."""
    width, height = image.size
    canvas = Image.new("L", (int(width * (1 + fraction)), int(height * (1 + fraction))))
    canvas.paste(image, ((canvas.width - width) // 2, (canvas.height - height) // 2))
    return canvas


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


def alterations(rng: np.random.Generator) -> dict[str, Alteration]:
    """Each alteration of the definition, and one combination; input and output mode L."""
    return {
        "gamma_0.7": lambda im: gamma(im, 0.7),
        "gamma_1.4": lambda im: gamma(im, 1.4),
        "window_20_220": lambda im: window(im, 20, 220),
        "crop_10": lambda im: crop(im, 0.10, rng),
        "crop_20": lambda im: crop(im, 0.20, rng),
        "zoom_out_15": lambda im: zoom_out(im, 0.15),
        "resize_0.5": lambda im: im.resize((im.width // 2, im.height // 2)),
        "resize_1.5": lambda im: im.resize((im.width * 3 // 2, im.height * 3 // 2)),
        # Another aspect ratio: one axis squeezed, as a copy cropped and resized unevenly.
        "stretch_0.8": lambda im: im.resize((im.width * 4 // 5, im.height)),
        "jpeg_40": lambda im: jpeg(im, 40),
        "combined": lambda im: jpeg(crop(gamma(im, 1.3), 0.15, rng), 60),
    }
