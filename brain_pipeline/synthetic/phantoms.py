"""Deterministic synthetic brain-MRI phantoms that imitate three public Kaggle datasets.

The phantoms are axial slices drawn analytically: every structure (head, skull,
brain, cortex, sulci, ventricles, lesions) is a shape in "anatomy units" (head
half-height = 1), and each output pixel is mapped back into those units through
the per-image pose. Masks and image therefore share one geometric transform.

Only NumPy, SciPy (the shared blur) and Pillow are used.
Every random choice comes from the ``numpy.random.Generator`` passed in, so a
seed fully determines the written bytes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from brain_pipeline.core.classes import TARGET_CLASSES
from brain_pipeline.core.data.lesions import CORE_VALUE, HALO_VALUE, lesion_mask_path
from brain_pipeline.core.imaging.filters import gaussian_blur

STYLES = ("navoneel", "preetviradiya", "alzheimer")
ALZHEIMER_GRADES = ("VeryMildDemented", "MildDemented", "ModerateDemented")
ALZHEIMER_HEALTHY_LABEL = "NonDemented"

DATASET_FOLDERS = {
    "navoneel": "synth_navoneel",
    "preetviradiya": "synth_preetviradiya",
    "alzheimer": "synth_alzheimer",
}
LESION_MASKS_DIRNAME = "_lesion_masks"
# The halo counts as tumour where its intensity shift is at least half its peak (its weight
# falls from 1 at the core's edge to 0 at oedema_scale times the core's radius).
HALO_WEIGHT_THRESHOLD = 0.5
MIN_IMAGE_SIDE = 16
MIN_SCALED_SIDE = 32

_PREET_BASE = PurePosixPath("Brain Tumor Data Set", "Brain Tumor Data Set")
_ALZHEIMER_BASE = PurePosixPath("Image-dataset")
_ALZHEIMER_FOLDERS = ("MildDemented", "ModerateDemented", "NonDemented", "VeryMildDemented")
_ALZHEIMER_FILE_PREFIX = {
    "NonDemented": "nonDem",
    "VeryMildDemented": "verymildDem",
    "MildDemented": "mildDem",
    "ModerateDemented": "moderateDem",
}
# Atrophy level per grade before the difficulty scaling; 1.0 is a strong effect.
_GRADE_ATROPHY = {"VeryMildDemented": 0.3, "MildDemented": 0.6, "ModerateDemented": 1.0}
# Brain radius relative to the inner skull before atrophy; framing uses it so
# that atrophied brains still look smaller in skull-stripped images.
_BASE_BRAIN_FRACTION = 0.94
_TEXTURE_EXTENT = 1.3
_TEXTURE_SIZE = 96


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class Phantom:
    """One rendered slice with its ground truth."""

    image: Image.Image
    brain_mask: np.ndarray
    lesion_mask: np.ndarray | None  # the tumour core
    # Core plus the oedema halo (see HALO_WEIGHT_THRESHOLD); None without lesions.
    whole_tumour_mask: np.ndarray | None = None

    def mask_labels(self) -> np.ndarray | None:
        """The lesion mask file's content: CORE_VALUE, HALO_VALUE or 0 per pixel."""
        if self.lesion_mask is None:
            return None
        labels = np.zeros(self.lesion_mask.shape, np.uint8)
        if self.whole_tumour_mask is not None:
            labels[self.whole_tumour_mask] = HALO_VALUE
        labels[self.lesion_mask] = CORE_VALUE
        return labels


@dataclass(frozen=True)
class SynthesisSummary:
    """What ``synthesize_datasets`` wrote."""

    root: Path
    counts: dict[str, dict[str, int]]
    n_images: int
    n_lesion_masks: int


# --------------------------------------------------------------------------- styles


@dataclass(frozen=True)
class _Tissue:
    """Pre-acquisition intensities (0..1) of each tissue in one source style."""

    background: float
    scalp: float
    bone: float
    diploe: float
    csf: float
    grey: float
    white: float
    oedema_sign: float  # +1: oedema bright (FLAIR-like), -1: dark (T1-like)


@dataclass(frozen=True)
class _Style:
    name: str
    mode: str
    skull: bool
    widths: tuple[int, int]  # inclusive range; equal bounds = fixed size
    heights: tuple[int, int]
    png_fraction: float
    jpeg_quality: tuple[int, int]
    tissue: _Tissue
    fill: tuple[float, float]  # fraction of the frame the head (or brain) spans
    rotation_deg: float
    pose_jitter: float  # fraction of the free margin used for shifting
    noise: tuple[float, float]
    bias: float
    blur: tuple[float, float]
    gamma_spread: float


_STYLES = {
    # Mixed T1/T2 scans from many scanners: variable size, pose and quality.
    "navoneel": _Style(
        name="navoneel",
        mode="RGB",
        skull=True,
        widths=(180, 320),
        heights=(180, 320),
        png_fraction=0.1,
        jpeg_quality=(60, 95),
        tissue=_Tissue(0.03, 0.78, 0.18, 0.55, 0.12, 0.46, 0.62, -1.0),
        fill=(0.68, 0.94),
        rotation_deg=10.0,
        pose_jitter=0.8,
        noise=(0.015, 0.05),
        bias=0.25,
        blur=(0.4, 1.1),
        gamma_spread=0.18,
    ),
    # Larger, cleaner FLAIR-like slices: grey matter brighter than white matter.
    "preetviradiya": _Style(
        name="preetviradiya",
        mode="RGB",
        skull=True,
        widths=(256, 256),
        heights=(256, 256),
        png_fraction=0.0,
        jpeg_quality=(75, 95),
        tissue=_Tissue(0.06, 0.62, 0.22, 0.45, 0.16, 0.60, 0.44, 1.0),
        fill=(0.78, 0.93),
        rotation_deg=7.0,
        pose_jitter=0.5,
        noise=(0.01, 0.035),
        bias=0.2,
        blur=(0.3, 0.8),
        gamma_spread=0.12,
    ),
    # Registered, skull-stripped T1 slices: tiny pose changes, low noise, soft look.
    "alzheimer": _Style(
        name="alzheimer",
        mode="L",
        skull=False,
        widths=(176, 176),
        heights=(208, 208),
        png_fraction=0.0,
        jpeg_quality=(85, 95),
        tissue=_Tissue(0.0, 0.0, 0.0, 0.0, 0.1, 0.5, 0.72, -1.0),
        fill=(0.86, 0.93),
        rotation_deg=2.0,
        pose_jitter=0.3,
        noise=(0.004, 0.015),
        bias=0.08,
        blur=(0.6, 1.0),
        gamma_spread=0.06,
    ),
}


# --------------------------------------------------------------------------- anatomy


@dataclass(frozen=True, eq=False)
class _Lesion:
    centre: tuple[float, float]  # anatomy units
    radius: float  # anatomy units
    wobble: np.ndarray  # rows of (harmonic, amplitude, phase)
    oedema_scale: float  # oedema radius / lesion radius
    contrast: float  # signed intensity offset of the lesion core
    necrotic: bool
    mass_effect: float  # how far (anatomy units) nearby tissue is pushed


@dataclass(frozen=True, eq=False)
class _Anatomy:
    head_axes: tuple[float, float]
    head_wobble: np.ndarray
    skull_thickness: float  # fraction of the head radius
    brain_fraction: float  # brain radius / inner skull radius
    brain_wobble: np.ndarray
    cortex_thickness: float  # fraction of the brain radius
    ventricle_width: float  # half-width, brain-normalised units
    ventricle_length: float  # half-length, brain-normalised units
    ventricle_asymmetry: float
    ventricle_bend: float
    sulcus_angles: np.ndarray
    sulcus_depths: np.ndarray
    sulcus_widths: np.ndarray  # half-widths, brain-normalised units
    fissure_width: float
    textures: np.ndarray  # (n, n, 4) smooth unit-variance noise fields
    texture_shift: float
    lesions: tuple[_Lesion, ...]


@dataclass(frozen=True, eq=False)
class _View:
    rotation: float  # radians
    scale_px: float  # pixels per anatomy unit
    shift: tuple[float, float]  # pixels
    blur_sigma: float
    noise_sigma: float
    bias_field: np.ndarray  # small grid, upsampled at render time
    bias_amplitude: float
    gamma: float
    white_level: float


def _random_wobble(rng: np.random.Generator, harmonics: range, amplitude: float) -> np.ndarray:
    """Low-frequency radial perturbation so outlines are not perfect ellipses."""
    ks = np.array(list(harmonics), dtype=np.float32)
    amps = (rng.uniform(0.3, 1.0, ks.size) * amplitude / ks).astype(np.float32)
    phases = rng.uniform(0.0, 2 * math.pi, ks.size).astype(np.float32)
    return np.stack([ks, amps, phases], axis=1)


def _smooth_noise_fields(rng: np.random.Generator, channels: int) -> np.ndarray:
    """Multi-octave noise: random low-resolution grids upsampled bicubically."""
    total = np.zeros((_TEXTURE_SIZE, _TEXTURE_SIZE, channels), dtype=np.float32)
    for cells, weight in ((4, 1.0), (9, 0.7), (19, 0.5), (39, 0.35)):
        coarse = rng.standard_normal((cells, cells, channels)).astype(np.float32)
        for c in range(channels):
            upsampled = Image.fromarray(coarse[:, :, c]).resize(
                (_TEXTURE_SIZE, _TEXTURE_SIZE), Image.Resampling.BICUBIC
            )
            total[:, :, c] += weight * np.asarray(upsampled, dtype=np.float32)
    total -= total.mean(axis=(0, 1))
    total /= total.std(axis=(0, 1)) + 1e-6
    return total


def _atrophy_level(
    rng: np.random.Generator, target_class: str, grade: str | None, difficulty: float
) -> float:
    """Disease atrophy plus natural ageing variation shared by every class.

    The natural term makes healthy and very mild subjects overlap on purpose.
    """
    natural = float(rng.normal(0.0, 0.1))
    disease = 0.0
    if target_class == "alzheimer_brain" and grade is not None:
        disease = _GRADE_ATROPHY[grade] * (1.0 - 0.6 * difficulty)
    return max(-0.2, disease + natural)


def _sample_sulci(
    rng: np.random.Generator, atrophy: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radial grooves; two deeper Sylvian fissures on the lateral sides."""
    count = int(rng.integers(28, 41))
    spacing = 2 * math.pi / count
    angles = np.arange(count) * spacing + rng.uniform(-0.3, 0.3, count) * spacing
    depths = rng.uniform(0.07, 0.24, count)
    widths = rng.uniform(0.006, 0.014, count)
    sylvian = np.array([-0.3, math.pi + 0.3]) + rng.normal(0.0, 0.08, 2)
    angles = np.concatenate([angles, sylvian])
    depths = np.concatenate([depths, rng.uniform(0.3, 0.4, 2)])
    widths = np.concatenate([widths, rng.uniform(0.014, 0.02, 2)])
    # Atrophy opens the sulci and lets CSF reach deeper.
    widths = widths * (1.0 + 2.5 * max(atrophy, 0.0)) * (1.0 + 0.5 * min(atrophy, 0.0))
    depths = depths * (1.0 + 0.4 * atrophy)
    angles = (angles + math.pi) % (2 * math.pi) - math.pi
    order = np.argsort(angles)
    return (
        angles[order].astype(np.float32),
        depths[order].astype(np.float32),
        widths[order].astype(np.float32),
    )


def _sample_lesion(
    rng: np.random.Generator, brain_axes: tuple[float, float], difficulty: float
) -> _Lesion:
    signal = 1.0 - 0.6 * difficulty
    brain_radius = math.sqrt(brain_axes[0] * brain_axes[1])
    # Log-uniform size so small lesions are as common as large ones. The range spans the
    # tumours of the real Kaggle sets (a few percent of the brain's radius to about a third);
    # below ~5% a lesion is a handful of pixels at 128 px and carries almost no signal.
    fraction = math.exp(rng.uniform(math.log(0.06), math.log(0.30))) * (1.0 - 0.4 * difficulty)
    radius = fraction * brain_radius
    # Keep the whole lesion inside the brain.
    reach = max(0.05, 0.8 - fraction * 1.5)
    distance = reach * math.sqrt(rng.uniform(0.0, 1.0))
    angle = rng.uniform(0.0, 2 * math.pi)
    centre = (
        distance * math.cos(angle) * brain_axes[0],
        distance * math.sin(angle) * brain_axes[1],
    )
    sign = 1.0 if rng.uniform() < 0.6 else -1.0
    contrast = sign * rng.uniform(0.12, 0.35) * signal
    oedema_scale = rng.uniform(1.4, 2.3)
    return _Lesion(
        centre=centre,
        radius=radius,
        wobble=_random_wobble(rng, range(2, 6), 0.35),
        oedema_scale=oedema_scale,
        contrast=contrast,
        necrotic=bool(fraction > 0.12 and rng.uniform() < 0.5),
        mass_effect=radius * oedema_scale * rng.uniform(0.3, 0.6),
    )


def _sample_anatomy(
    rng: np.random.Generator, target_class: str, grade: str | None, difficulty: float
) -> _Anatomy:
    atrophy = _atrophy_level(rng, target_class, grade, difficulty)
    head_axes = (float(rng.uniform(0.76, 0.86)), 1.0)
    skull_thickness = float(rng.uniform(0.08, 0.12))
    brain_fraction = float(rng.uniform(0.92, 0.96)) * (1.0 - 0.06 * max(atrophy, 0.0))
    natural_ventricles = float(rng.lognormal(0.0, 0.15))
    angles, depths, widths = _sample_sulci(rng, atrophy)
    anatomy = _Anatomy(
        head_axes=head_axes,
        head_wobble=_random_wobble(rng, range(2, 5), 0.06),
        skull_thickness=skull_thickness,
        brain_fraction=brain_fraction,
        brain_wobble=_random_wobble(rng, range(2, 6), 0.06),
        cortex_thickness=float(rng.uniform(0.08, 0.11)) * (1.0 - 0.25 * atrophy),
        ventricle_width=0.06 * natural_ventricles * (1.0 + 1.3 * atrophy),
        ventricle_length=float(rng.uniform(0.27, 0.33)) * (1.0 + 0.25 * atrophy),
        ventricle_asymmetry=float(np.clip(rng.normal(0.0, 0.05), -0.1, 0.1)),
        ventricle_bend=float(rng.uniform(0.4, 0.9)),
        sulcus_angles=angles,
        sulcus_depths=depths,
        sulcus_widths=widths,
        fissure_width=0.008 * (1.0 + 2.0 * max(atrophy, 0.0)),
        textures=_smooth_noise_fields(rng, 4),
        texture_shift=0.0,
        lesions=(),
    )
    if target_class == "tumor_brain":
        count = int(rng.choice([1, 2, 3], p=[0.65, 0.25, 0.1]))
        axes = _brain_axes(anatomy)
        lesions = tuple(_sample_lesion(rng, axes, difficulty) for _ in range(count))
        anatomy = replace(anatomy, lesions=lesions)
    return anatomy


def _neighbour_slice(anatomy: _Anatomy, z: float) -> _Anatomy:
    """The same subject a little above/below: smaller brain and ventricles away from z=0."""
    return replace(
        anatomy,
        brain_fraction=anatomy.brain_fraction * (1.0 - 0.25 * z * z),
        ventricle_length=anatomy.ventricle_length * (1.0 - 2.0 * z * z),
        ventricle_width=anatomy.ventricle_width * (1.0 - 1.5 * z * z),
        texture_shift=anatomy.texture_shift + 0.4 * z,
    )


def _brain_axes(anatomy: _Anatomy, fraction: float | None = None) -> tuple[float, float]:
    inner = (1.0 - anatomy.skull_thickness) * (
        anatomy.brain_fraction if fraction is None else fraction
    )
    return (anatomy.head_axes[0] * inner, anatomy.head_axes[1] * inner)


# --------------------------------------------------------------------------- pose and acquisition


def _sample_view(
    rng: np.random.Generator,
    anatomy: _Anatomy,
    style: _Style,
    size: tuple[int, int],
    difficulty: float,
) -> _View:
    nuisance = 0.5 + difficulty
    rotation = math.radians(float(rng.normal(0.0, style.rotation_deg * nuisance)))
    if style.skull:
        ax, ay = anatomy.head_axes
    else:
        ax, ay = _brain_axes(anatomy, _BASE_BRAIN_FRACTION)
    # Half extents of the rotated ellipse decide how large it can be drawn.
    cos, sin = abs(math.cos(rotation)), abs(math.sin(rotation))
    extent_x = math.hypot(ax * cos, ay * sin)
    extent_y = math.hypot(ax * sin, ay * cos)
    width, height = size
    fill = rng.uniform(*style.fill)
    scale = fill * min(width / 2 / extent_x, height / 2 / extent_y)
    slack_x = max(0.0, width / 2 - extent_x * scale)
    slack_y = max(0.0, height / 2 - extent_y * scale)
    jitter = min(1.0, style.pose_jitter * nuisance)
    shift = (
        float(rng.uniform(-1, 1) * slack_x * jitter),
        float(rng.uniform(-1, 1) * slack_y * jitter),
    )
    low, high = style.noise
    return _View(
        rotation=rotation,
        scale_px=scale,
        shift=shift,
        blur_sigma=float(rng.uniform(*style.blur)) * min(width, height) / 256,
        noise_sigma=float(rng.uniform(low, high)) * nuisance,
        bias_field=rng.uniform(-1.0, 1.0, (3, 3)).astype(np.float32),
        bias_amplitude=style.bias * nuisance * float(rng.uniform(0.3, 1.0)),
        gamma=float(np.exp(rng.normal(0.0, style.gamma_spread * nuisance))),
        white_level=float(rng.uniform(0.85, 1.0)),
    )


def _jitter_view(rng: np.random.Generator, view: _View) -> _View:
    """Neighbouring slices of a subject share the pose up to tiny differences."""
    return replace(
        view,
        rotation=view.rotation + math.radians(float(rng.normal(0.0, 0.3))),
        shift=(
            view.shift[0] + float(rng.normal(0.0, 0.5)),
            view.shift[1] + float(rng.normal(0.0, 0.5)),
        ),
        noise_sigma=view.noise_sigma * float(rng.uniform(0.8, 1.2)),
    )


def _draw_size(rng: np.random.Generator, style: _Style) -> tuple[int, int]:
    width = int(rng.integers(style.widths[0], style.widths[1] + 1))
    height = int(rng.integers(style.heights[0], style.heights[1] + 1))
    return width, height


def _bias_field(view: _View, size: tuple[int, int]) -> np.ndarray:
    """Smooth multiplicative shading like a receive-coil sensitivity profile."""
    field = Image.fromarray(view.bias_field).resize(size, Image.Resampling.BICUBIC)
    return 1.0 + view.bias_amplitude * np.clip(np.asarray(field, dtype=np.float32), -1.0, 1.0)


def _acquire(clean: np.ndarray, view: _View, rng: np.random.Generator) -> np.ndarray:
    """Scanner and export effects: shading, blur, Rician noise, windowing, 8-bit."""
    height, width = clean.shape
    image = clean * _bias_field(view, (width, height))
    if view.blur_sigma >= 0.2:  # below that the blur changes nothing visible
        image = gaussian_blur(image, view.blur_sigma)
    # Magnitude of complex Gaussian noise gives the Rician floor of real MRI.
    real = image + view.noise_sigma * rng.standard_normal(image.shape, dtype=np.float32)
    imaginary = view.noise_sigma * rng.standard_normal(image.shape, dtype=np.float32)
    image = np.sqrt(real * real + imaginary * imaginary)
    # Exported images are windowed so the brightest tissue lands near white.
    top = float(np.percentile(image, 99.5)) + 1e-6
    image = np.clip(image / top, 0.0, 1.0) ** view.gamma * view.white_level
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- drawing


def _coverage(signed_distance_px: np.ndarray) -> np.ndarray:
    """Anti-aliased inside fraction from a signed distance (negative inside)."""
    return np.clip(0.5 - signed_distance_px, 0.0, 1.0)


def _wobble_factor(theta: np.ndarray, wobble: np.ndarray) -> np.ndarray:
    factor = np.ones_like(theta)
    for k, amplitude, phase in wobble:
        factor += amplitude * np.cos(k * theta + phase)
    return factor


def _pixel_to_anatomy(size: tuple[int, int], view: _View) -> tuple[np.ndarray, np.ndarray]:
    """Inverse pose: where in anatomy units each output pixel centre falls."""
    width, height = size
    x = np.arange(width, dtype=np.float32) + 0.5 - width / 2 - view.shift[0]
    y = np.arange(height, dtype=np.float32) + 0.5 - height / 2 - view.shift[1]
    xx, yy = np.meshgrid(x / view.scale_px, y / view.scale_px)
    cos, sin = math.cos(view.rotation), math.sin(view.rotation)
    return cos * xx + sin * yy, -sin * xx + cos * yy


def _sample_textures(textures: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup of the noise fields at anatomy coordinates, (H, W, C)."""
    n = textures.shape[0]
    scale = (n - 1) / (2 * _TEXTURE_EXTENT)
    fx = np.clip((u + _TEXTURE_EXTENT) * scale, 0.0, n - 1.001)
    fy = np.clip((v + _TEXTURE_EXTENT) * scale, 0.0, n - 1.001)
    x0, y0 = fx.astype(np.int32), fy.astype(np.int32)
    wx, wy = (fx - x0)[..., None], (fy - y0)[..., None]
    top = textures[y0, x0] * (1 - wx) + textures[y0, x0 + 1] * wx
    bottom = textures[y0 + 1, x0] * (1 - wx) + textures[y0 + 1, x0 + 1] * wx
    return top * (1 - wy) + bottom * wy


def _push_away_from_lesions(
    u: np.ndarray, v: np.ndarray, lesions: tuple[_Lesion, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Mass effect: look up anatomy closer to each lesion, so tissue appears pushed out."""
    for lesion in lesions:
        du, dv = u - lesion.centre[0], v - lesion.centre[1]
        distance = np.sqrt(du * du + dv * dv) + 1e-6
        reach = 2.5 * lesion.radius * lesion.oedema_scale
        push = lesion.mass_effect * np.exp(-((distance / reach) ** 2))
        ratio = np.maximum(distance - push, 0.0) / distance
        u, v = lesion.centre[0] + du * ratio, lesion.centre[1] + dv * ratio
    return u, v


def _head_layers(
    u: np.ndarray, v: np.ndarray, anatomy: _Anatomy, tissue: _Tissue, px: float, texture: np.ndarray
) -> np.ndarray:
    """Scalp (bright), bone (dark line), diploe (bright) and the CSF gap, from outside in."""
    ax, ay = anatomy.head_axes
    theta = np.arctan2(v, u)
    rho = np.sqrt((u / ax) ** 2 + (v / ay) ** 2) / _wobble_factor(theta, anatomy.head_wobble)
    t = anatomy.skull_thickness
    image = np.full(u.shape, tissue.background, dtype=np.float32)
    layers = (
        (1.0, tissue.scalp * (1.0 + 0.08 * texture)),
        (1.0 - 0.35 * t, tissue.bone),
        (1.0 - 0.6 * t, tissue.diploe * (1.0 + 0.1 * texture)),
        (1.0 - 0.85 * t, tissue.bone),
        (1.0 - t, tissue.csf),
    )
    for edge, value in layers:
        image += (value - image) * _coverage((rho - edge) * px)
    return image


def _nearest_sulcus(theta: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of, and signed angular offset to, the nearest sulcus for every pixel."""
    count = angles.size
    wrapped = np.concatenate([angles[-1:] - 2 * math.pi, angles, angles[:1] + 2 * math.pi])
    right = np.searchsorted(wrapped, theta)
    right = np.clip(right, 1, count + 1)
    left = right - 1
    to_left, to_right = theta - wrapped[left], wrapped[right] - theta
    use_left = to_left < to_right
    index = np.where(use_left, left, right)
    offset = np.where(use_left, to_left, -to_right)
    return (index - 1) % count, offset


def _sulci_and_gyri(
    r: np.ndarray, theta: np.ndarray, anatomy: _Anatomy, px: float, wiggle: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """CSF coverage of the radial sulci and how far each pixel is from a sulcus (0..1)."""
    # Bend and wiggle the grooves so they are not straight spokes.
    bent = theta + 0.25 * (1.0 - r) + 0.1 * wiggle
    bent = (bent + math.pi) % (2 * math.pi) - math.pi
    index, offset = _nearest_sulcus(bent, anatomy.sulcus_angles)
    depth = anatomy.sulcus_depths[index]
    taper = np.sqrt(np.clip((r - (1.0 - depth)) / depth, 0.0, 1.0))
    half_width = anatomy.sulcus_widths[index] * taper
    distance = np.abs(offset) * r
    groove = _coverage((distance - half_width) * px) * (taper > 0)
    half_spacing = math.pi / anatomy.sulcus_angles.size
    gyral = np.clip(np.abs(offset) / half_spacing, 0.0, 1.0)
    return groove, gyral


def _ventricles(big_u: np.ndarray, big_v: np.ndarray, anatomy: _Anatomy, px: float) -> np.ndarray:
    """Two lateral ventricles bowing towards a thin midline septum: ')('."""
    coverage = np.zeros_like(big_u)
    for side in (-1.0, 1.0):
        size = 1.0 + side * anatomy.ventricle_asymmetry
        width = anatomy.ventricle_width * size
        along = (big_v + 0.05) / (anatomy.ventricle_length * size)
        clipped = np.clip(along, -1.0, 1.0)
        # Frontal horns are wider than the bodies; only a thin septum separates them.
        local_width = width * (1.0 - 0.3 * clipped)
        medial_wall = 0.015 + anatomy.ventricle_bend * 0.12 * clipped**2
        across = (big_u - side * (medial_wall + local_width)) / local_width
        rho = np.sqrt(across**2 + along**2)
        coverage = np.maximum(coverage, _coverage((rho - 1.0) * px * width))
    return coverage


def _deep_grey(big_u: np.ndarray, big_v: np.ndarray, anatomy: _Anatomy, px: float) -> np.ndarray:
    """Basal ganglia/thalami lateral to the ventricles: a soft grey-matter island."""
    offset = 0.22 + 1.2 * anatomy.ventricle_width
    coverage = np.zeros_like(big_u)
    for side in (-1.0, 1.0):
        rho = np.sqrt(((big_u - side * offset) / 0.11) ** 2 + ((big_v - 0.05) / 0.22) ** 2)
        coverage = np.maximum(coverage, np.clip((1.0 - rho) * 3.0, 0.0, 1.0))
    return 0.3 * coverage


def _lesion_layers(
    u: np.ndarray, v: np.ndarray, lesion: _Lesion, px: float, min_radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Core coverage, soft oedema weight and necrotic-centre coverage of one lesion."""
    du, dv = u - lesion.centre[0], v - lesion.centre[1]
    distance = np.sqrt(du * du + dv * dv)
    outline = np.maximum(lesion.radius, min_radius) * _wobble_factor(
        np.arctan2(dv, du), lesion.wobble
    )
    core = _coverage((distance - outline) * px)
    oedema_radius = outline * lesion.oedema_scale
    oedema = np.clip((oedema_radius - distance) / (oedema_radius - outline + 1e-6), 0.0, 1.0) ** 0.7
    necrosis = _coverage((distance - 0.5 * outline) * px) if lesion.necrotic else np.zeros_like(u)
    return core, oedema, necrosis


def _render_clean(
    anatomy: _Anatomy, style: _Style, view: _View, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Noise-free slice in 0..1 plus brain, lesion-core and whole-tumour masks."""
    tissue = style.tissue
    u, v = _pixel_to_anatomy(size, view)
    warped_u, warped_v = _push_away_from_lesions(u, v, anatomy.lesions)
    textures = _sample_textures(anatomy.textures, warped_u, warped_v + anatomy.texture_shift)
    head_px = view.scale_px * math.sqrt(anatomy.head_axes[0] * anatomy.head_axes[1])
    if style.skull:
        image = _head_layers(u, v, anatomy, tissue, head_px, textures[..., 3])
    else:
        image = np.full(u.shape, tissue.background, dtype=np.float32)

    bx, by = _brain_axes(anatomy)
    brain_px = view.scale_px * math.sqrt(bx * by)
    # The brain outline stays put (the skull holds it); inner structures are warped.
    outline = np.sqrt((u / bx) ** 2 + (v / by) ** 2) / _wobble_factor(
        np.arctan2(v, u), anatomy.brain_wobble
    )
    # Gentle bumps so the surface is not a perfect curve.
    brain = _coverage((outline - 1.0 - 0.012 * textures[..., 1]) * brain_px)
    big_u, big_v = warped_u / bx, warped_v / by
    r = np.sqrt(big_u**2 + big_v**2) / _wobble_factor(
        np.arctan2(big_v, big_u), anatomy.brain_wobble
    )
    theta = np.arctan2(big_v, big_u)

    grooves, gyral = _sulci_and_gyri(r, theta, anatomy, brain_px, textures[..., 2])
    # White matter reaches up into each gyrus and recedes under each sulcus.
    wm_edge = 1.0 - anatomy.cortex_thickness * (1.9 - 0.9 * gyral) + 0.035 * textures[..., 1]
    white = _coverage((r - wm_edge) * brain_px * 0.5)
    parenchyma = tissue.grey + (tissue.white - tissue.grey) * white
    parenchyma += (tissue.grey - parenchyma) * _deep_grey(big_u, big_v, anatomy, brain_px)
    parenchyma *= 1.0 + 0.06 * textures[..., 0]

    fissure = _coverage((np.abs(big_u) - anatomy.fissure_width) * brain_px) * np.clip(
        (np.abs(big_v + 0.05) - 0.45) * 8.0, 0.0, 1.0
    )
    csf = np.maximum(np.maximum(grooves, fissure), _ventricles(big_u, big_v, anatomy, brain_px))
    parenchyma += (tissue.csf - parenchyma) * csf

    lesion_cover = np.zeros_like(u)
    halo_cover = np.zeros_like(u)
    min_radius = 1.5 / view.scale_px  # a lesion must stay visible at any image size
    for lesion in anatomy.lesions:
        core, oedema, necrosis = _lesion_layers(u, v, lesion, view.scale_px, min_radius)
        oedema_shift = tissue.oedema_sign * 0.6 * abs(lesion.contrast)
        parenchyma += oedema_shift * oedema * (1.0 - core)
        lesion_value = tissue.white + lesion.contrast + 0.05 * textures[..., 3]
        parenchyma += (lesion_value - parenchyma) * core
        parenchyma += (tissue.csf - parenchyma) * necrosis * 0.7
        lesion_cover = np.maximum(lesion_cover, core)
        halo_cover = np.maximum(halo_cover, oedema)

    image += (parenchyma - image) * brain
    brain_mask = brain > 0.5
    if not anatomy.lesions:
        return image.astype(np.float32), brain_mask, None, None
    lesion_mask = (lesion_cover > 0.5) & brain_mask
    whole_tumour = lesion_mask | ((halo_cover > HALO_WEIGHT_THRESHOLD) & brain_mask)
    return image.astype(np.float32), brain_mask, lesion_mask, whole_tumour


def _to_pil(pixels: np.ndarray, mode: str) -> Image.Image:
    grey = Image.fromarray(pixels)
    return grey.convert("RGB") if mode == "RGB" else grey


def _render(
    rng: np.random.Generator, anatomy: _Anatomy, style: _Style, view: _View, size: tuple[int, int]
) -> Phantom:
    clean, brain_mask, lesion_mask, whole_tumour = _render_clean(anatomy, style, view, size)
    pixels = _acquire(clean, view, rng)
    return Phantom(
        image=_to_pil(pixels, style.mode),
        brain_mask=brain_mask,
        lesion_mask=lesion_mask,
        whole_tumour_mask=whole_tumour,
    )


# --------------------------------------------------------------------------- validation


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(allowed)}")


def _check_difficulty(difficulty: float) -> float:
    if isinstance(difficulty, bool) or not isinstance(difficulty, (int, float)):
        raise ValueError(f"difficulty must be a number in [0, 1], got {difficulty!r}")
    if not 0.0 <= float(difficulty) <= 1.0:  # also rejects NaN
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty!r}")
    return float(difficulty)


def _check_grade(target_class: str, grade: str | None) -> None:
    if grade is None:
        return
    if target_class != "alzheimer_brain":
        raise ValueError(f"grade only applies to 'alzheimer_brain', not {target_class!r}")
    _check_choice("grade", grade, ALZHEIMER_GRADES)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in size)
    ):
        raise ValueError(f"size must be a (width, height) pair of ints, got {size!r}")
    width, height = int(size[0]), int(size[1])
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ValueError(f"size sides must be at least {MIN_IMAGE_SIDE} px, got {size!r}")
    return width, height


# --------------------------------------------------------------------------- public API


def render_phantom(
    rng: np.random.Generator,
    target_class: str,
    style: str,
    *,
    grade: str | None = None,
    difficulty: float = 0.5,
    size: tuple[int, int] | None = None,
) -> Phantom:
    """Render one synthetic axial slice of ``target_class`` in a source ``style``.

    ``grade`` applies to ``alzheimer_brain`` only (drawn at random when None).
    ``size`` is (width, height) and overrides the style's own size.
    """
    _check_choice("target class", target_class, TARGET_CLASSES)
    _check_choice("style", style, STYLES)
    _check_grade(target_class, grade)
    difficulty = _check_difficulty(difficulty)
    spec = _STYLES[style]
    if target_class == "alzheimer_brain" and grade is None:
        grade = str(rng.choice(ALZHEIMER_GRADES))
    size = _draw_size(rng, spec) if size is None else _check_size(size)
    anatomy = _sample_anatomy(rng, target_class, grade, difficulty)
    view = _sample_view(rng, anatomy, spec, size, difficulty)
    return _render(rng, anatomy, spec, view, size)


def _scaled_size(size: tuple[int, int], image_scale: float) -> tuple[int, int]:
    return tuple(max(MIN_SCALED_SIDE, round(side * image_scale)) for side in size)  # type: ignore[return-value]


def _encode(image: Image.Image, rng: np.random.Generator, style: _Style) -> tuple[bytes, str]:
    """Encoded bytes and suffix. Fixed settings and no metadata keep bytes reproducible."""
    buffer = io.BytesIO()
    if rng.uniform() < style.png_fraction:
        image.save(buffer, format="PNG", optimize=False)
        return buffer.getvalue(), ".png"
    quality = int(rng.integers(style.jpeg_quality[0], style.jpeg_quality[1] + 1))
    image.save(buffer, format="JPEG", quality=quality, optimize=False, progressive=False)
    return buffer.getvalue(), ".jpg"


class _Writer:
    """Writes images and masks of one run and keeps the tallies."""

    def __init__(self, out_root: Path) -> None:
        self.out_root = out_root
        self.counts: dict[str, dict[str, int]] = {}
        self.n_images = 0
        self.n_lesion_masks = 0

    def write(
        self,
        dataset: str,
        label: str,
        relative_stem: PurePosixPath,
        phantom: Phantom,
        rng: np.random.Generator,
        style: _Style,
    ) -> None:
        data, suffix = _encode(phantom.image, rng, style)
        relative = relative_stem.with_suffix(suffix)
        target = self.out_root / dataset / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self.counts.setdefault(dataset, {}).setdefault(label, 0)
        self.counts[dataset][label] += 1
        self.n_images += 1
        labels = phantom.mask_labels()
        if labels is not None:
            mask_file = lesion_mask_path(
                self.out_root / LESION_MASKS_DIRNAME, dataset, str(relative)
            )
            mask_file.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(labels).save(mask_file, format="PNG")
            self.n_lesion_masks += 1


def _refuse_non_empty(out_root: Path) -> None:
    """Never mix two runs: refuse folders that already hold files."""
    for name in (*DATASET_FOLDERS.values(), LESION_MASKS_DIRNAME):
        folder = out_root / name
        if folder.exists() and (not folder.is_dir() or any(p.is_file() for p in folder.rglob("*"))):
            raise ValueError(
                f"refusing to write into non-empty {folder}; remove it or choose another out_root"
            )


def _write_skull_style(
    writer: _Writer,
    rng: np.random.Generator,
    style: str,
    images_per_label: int,
    difficulty: float,
    image_scale: float,
) -> None:
    spec = _STYLES[style]
    dataset = DATASET_FOLDERS[style]
    if style == "navoneel":
        folders = {"tumor_brain": ("yes", "Y{}"), "healthy_brain": ("no", "N{}")}
        base = PurePosixPath()
    else:
        folders = {
            "tumor_brain": ("Brain Tumor", "Cancer ({})"),
            "healthy_brain": ("Healthy", "Not Cancer  ({})"),
        }
        base = _PREET_BASE
    for target_class, (label, pattern) in folders.items():
        for number in range(1, images_per_label + 1):
            size = _scaled_size(_draw_size(rng, spec), image_scale)
            phantom = render_phantom(rng, target_class, style, difficulty=difficulty, size=size)
            stem = base / label / pattern.format(number)
            writer.write(dataset, label, stem, phantom, rng, spec)


def _alzheimer_subjects(rng: np.random.Generator, n_images: int) -> list[int]:
    """Slices per subject (2-4 neighbouring slices each) adding up to ``n_images``."""
    subjects: list[int] = []
    while sum(subjects) < n_images:
        subjects.append(min(int(rng.integers(2, 5)), n_images - sum(subjects)))
    return subjects


def _test_subjects(rng: np.random.Generator, subjects: list[int]) -> set[int]:
    """Whole subjects for the test split, bringing it as close as possible to 20% of images."""
    wanted = round(0.2 * sum(subjects))
    chosen: set[int] = set()
    taken = 0
    for index in rng.permutation(len(subjects)):
        if abs(taken + subjects[index] - wanted) < abs(taken - wanted):
            chosen.add(int(index))
            taken += subjects[index]
    return chosen


def _write_alzheimer(
    writer: _Writer,
    rng: np.random.Generator,
    images_per_label: int,
    difficulty: float,
    image_scale: float,
) -> None:
    spec = _STYLES["alzheimer"]
    dataset = DATASET_FOLDERS["alzheimer"]
    size = _scaled_size(_draw_size(rng, spec), image_scale)
    for label in ("NonDemented", *ALZHEIMER_GRADES):
        target_class = "healthy_brain" if label == ALZHEIMER_HEALTHY_LABEL else "alzheimer_brain"
        subjects = _alzheimer_subjects(rng, images_per_label)
        test = _test_subjects(rng, subjects)
        number = 0
        for index, n_slices in enumerate(subjects):
            split = "test" if index in test else "train"
            grade = None if target_class == "healthy_brain" else label
            anatomy = _sample_anatomy(rng, target_class, grade, difficulty)
            view = _sample_view(rng, anatomy, spec, size, difficulty)
            centre = rng.uniform(-0.15, 0.15)
            for k in range(n_slices):
                z = float(centre + 0.05 * (k - (n_slices - 1) / 2))
                phantom = _render(
                    rng, _neighbour_slice(anatomy, z), spec, _jitter_view(rng, view), size
                )
                stem = _ALZHEIMER_BASE / split / label / f"{_ALZHEIMER_FILE_PREFIX[label]}{number}"
                writer.write(dataset, label, stem, phantom, rng, spec)
                number += 1


def _make_empty_layout(out_root: Path) -> None:
    """Create every label folder, so an empty split still exists like in the real sets."""
    folders = (
        [PurePosixPath(DATASET_FOLDERS["navoneel"], name) for name in ("yes", "no")]
        + [
            PurePosixPath(DATASET_FOLDERS["preetviradiya"]) / _PREET_BASE / name
            for name in ("Brain Tumor", "Healthy")
        ]
        + [
            PurePosixPath(DATASET_FOLDERS["alzheimer"]) / _ALZHEIMER_BASE / split / name
            for split in ("train", "test")
            for name in _ALZHEIMER_FOLDERS
        ]
    )
    for folder in folders:
        (out_root / folder).mkdir(parents=True, exist_ok=True)


def synthesize_datasets(
    out_root: Path,
    *,
    seed: int = 0,
    difficulty: float = 0.5,
    images_per_label: int = 40,
    image_scale: float = 1.0,
) -> SynthesisSummary:
    """Write the three synthetic dataset trees (and lesion masks) under ``out_root``."""
    difficulty = _check_difficulty(difficulty)
    if isinstance(images_per_label, bool) or not isinstance(images_per_label, (int, np.integer)):
        raise ValueError(f"images_per_label must be an int, got {images_per_label!r}")
    if images_per_label < 1:
        raise ValueError(f"images_per_label must be at least 1, got {images_per_label}")
    if (
        isinstance(image_scale, bool)
        or not isinstance(image_scale, (int, float))
        or not (0.0 < float(image_scale) < math.inf)
    ):
        raise ValueError(f"image_scale must be a positive finite number, got {image_scale!r}")
    out_root = Path(out_root)
    _refuse_non_empty(out_root)
    _make_empty_layout(out_root)
    rng = np.random.default_rng(seed)
    writer = _Writer(out_root)
    # One child generator per dataset: each tree is reproducible on its own.
    navoneel_rng, preet_rng, alzheimer_rng = rng.spawn(3)
    _write_skull_style(
        writer, navoneel_rng, "navoneel", int(images_per_label), difficulty, float(image_scale)
    )
    _write_skull_style(
        writer, preet_rng, "preetviradiya", int(images_per_label), difficulty, float(image_scale)
    )
    _write_alzheimer(writer, alzheimer_rng, int(images_per_label), difficulty, float(image_scale))
    return SynthesisSummary(
        root=out_root,
        counts=writer.counts,
        n_images=writer.n_images,
        n_lesion_masks=writer.n_lesion_masks,
    )
