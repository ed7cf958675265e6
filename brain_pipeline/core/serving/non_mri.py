"""Images that are not brain MRI slices, to measure the guard against.

Generated with a seed (noise, blank frames, gradients, text pages, coloured shapes, chest
X-ray-like renders) plus crops of the two photographs scikit-learn ships, in colour and grey.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

KINDS = (
    "uniform_noise",
    "gaussian_noise",
    "blank",
    "gradient",
    "text_page",
    "coloured_shapes",
    "xray_like",
    "photo",
    "grey_photo",
)


def non_mri_images(per_kind: int = 10, seed: int = 0) -> list[tuple[str, Image.Image]]:
    """``per_kind`` images of each kind in KINDS, as (kind, image) pairs."""
    rng = np.random.default_rng(seed)
    makers: dict[str, Callable[[np.random.Generator], Image.Image]] = {
        "uniform_noise": _uniform_noise,
        "gaussian_noise": _gaussian_noise,
        "blank": _blank,
        "gradient": _gradient,
        "text_page": _text_page,
        "coloured_shapes": _coloured_shapes,
        "xray_like": _xray_like,
        "photo": lambda r: _photo_crop(r, grey=False),
        "grey_photo": lambda r: _photo_crop(r, grey=True),
    }
    return [(kind, makers[kind](rng)) for kind in KINDS for _ in range(per_kind)]


def _size(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(180, 520)), int(rng.integers(180, 520))


def _uniform_noise(rng: np.random.Generator) -> Image.Image:
    width, height = _size(rng)
    channels = (height, width, 3) if rng.random() < 0.5 else (height, width)
    return Image.fromarray(rng.integers(0, 256, channels, dtype=np.uint8))


def _gaussian_noise(rng: np.random.Generator) -> Image.Image:
    width, height = _size(rng)
    pixels = rng.normal(rng.uniform(40, 200), rng.uniform(10, 60), (height, width))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), mode="L")


def _blank(rng: np.random.Generator) -> Image.Image:
    return Image.new("L", _size(rng), int(rng.choice([0, 255, rng.integers(1, 255)])))


def _gradient(rng: np.random.Generator) -> Image.Image:
    width, height = _size(rng)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    if rng.random() < 0.5:
        angle = rng.uniform(0, np.pi)
        ramp = x * np.cos(angle) + y * np.sin(angle)
    else:
        ramp = np.hypot(x - rng.uniform(0.2, 0.8), y - rng.uniform(0.2, 0.8))
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    return Image.fromarray((255 * ramp).astype(np.uint8), mode="L")


def _text_page(rng: np.random.Generator) -> Image.Image:
    width, height = _size(rng)
    dark = rng.random() < 0.3
    page = Image.new("L", (width, height), 20 if dark else 245)
    draw = ImageDraw.Draw(page)
    words = ["patient", "scan", "report", "axial", "T1", "contrast", "normal", "findings"]
    for top in range(10, height - 12, int(rng.integers(12, 20))):
        line = " ".join(rng.choice(words, size=int(rng.integers(3, 9))))
        draw.text((int(rng.integers(5, 20)), top), line, fill=230 if dark else 15)
    return page


def _coloured_shapes(rng: np.random.Generator) -> Image.Image:
    width, height = _size(rng)
    canvas = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 10))):
        x0, y0 = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
        box = [
            x0,
            y0,
            x0 + int(rng.integers(15, width // 2)),
            y0 + int(rng.integers(15, height // 2)),
        ]
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return canvas


def _xray_like(rng: np.random.Generator) -> Image.Image:
    """A chest radiograph's layout: bright body, dark lungs, ribs, spine, blurred."""
    width, height = int(rng.integers(300, 520)), int(rng.integers(300, 520))
    body = Image.new("L", (width, height), int(rng.integers(0, 30)))
    draw = ImageDraw.Draw(body)
    draw.ellipse([width * 0.05, height * 0.02, width * 0.95, height * 1.2], fill=175)
    for side in (0.12, 0.55):
        draw.ellipse([width * side, height * 0.15, width * (side + 0.33), height * 0.85], fill=60)
    for rib in range(8):
        top = height * (0.18 + 0.08 * rib)
        draw.arc([width * 0.1, top, width * 0.9, top + height * 0.25], 200, 340, fill=150, width=6)
    draw.rectangle([width * 0.47, 0, width * 0.53, height], fill=210)
    blurred = body.filter(ImageFilter.GaussianBlur(float(rng.uniform(2, 5))))
    noise = rng.normal(0, 6, (height, width))
    return Image.fromarray((np.asarray(blurred) + noise).clip(0, 255).astype(np.uint8), mode="L")


def _photo_crop(rng: np.random.Generator, grey: bool) -> Image.Image:
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    photo = photos[int(rng.integers(len(photos)))]
    height, width = photo.shape[:2]
    crop_h, crop_w = int(rng.integers(height // 3, height)), int(rng.integers(width // 3, width))
    top, left = int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))
    image = Image.fromarray(photo[top : top + crop_h, left : left + crop_w])
    return image.convert("L") if grey else image
