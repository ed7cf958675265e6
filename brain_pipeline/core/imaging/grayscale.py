"""Any image Pillow decodes, as the 8-bit grayscale every later step reads."""

from __future__ import annotations

import numpy as np
from PIL import Image


def to_grayscale(image: Image.Image) -> Image.Image:
    """Any Pillow mode (16-bit, palette, alpha, CMYK...) to 8-bit grayscale."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float32)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become black background, like the scanner's.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("L")
    return image.convert("L")
