"""Turning an image file into the tensor the model sees, and caching those tensors.

Preprocessing removes the cues that give a source away rather than a disease: colour
channels (everything becomes grayscale), borders and image size (crop to the head's
bounding box, found above the background's own level and noise, pad to a square, resize),
and brightness and contrast (background level subtracted, then the head's intensities
equalised to one distribution per image).
The same function serves training, evaluation, prediction and explanation.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from brain_pipeline.core import artifact_names
from brain_pipeline.core.artifacts import atomic_path
from brain_pipeline.core.imaging.brain_mask import estimate_brain_mask
from brain_pipeline.core.imaging.filters import gaussian_blur
from brain_pipeline.core.imaging.grayscale import to_grayscale

# Bump when preprocess_image changes, so cached tensors are rebuilt.
PREPROCESSING_VERSION = "5"
_ESCAPED_BYTE = re.compile(rb"\\x([0-9a-f]{2})")


def filesystem_path(root: Path, display: str) -> Path:
    """Invert manifest.display_path: turn escaped non-UTF-8 bytes back into the real name."""
    raw = _ESCAPED_BYTE.sub(lambda m: bytes([int(m.group(1), 16)]), display.encode("utf-8"))
    return Path(root) / os.fsdecode(raw)


def load_image(source: Path | bytes | Image.Image) -> Image.Image:
    """Open a file (or bytes, or take an opened image), decode its first frame, apply EXIF
    orientation."""
    if isinstance(source, Image.Image):
        image = source
    else:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    image.seek(0)
    image.load()
    return ImageOps.exif_transpose(image)


def background_level(gray: np.ndarray) -> float:
    """Typical intensity of the frame's outermost pixels (scanner noise, grey backgrounds)."""
    ring = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    # A low percentile, so a head that touches the frame in places does not count.
    return float(np.percentile(ring, 25))


def head_bounding_box(gray: np.ndarray, threshold: float = 0.15) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the head: pixels (lightly blurred) brighter than the
    background by a fraction of the image's range, so noisy grey backgrounds are excluded."""
    radius = max(1, round(0.01 * max(gray.shape)))
    # The sigma of the (2r+1)-wide box this smoothing was first made with: r(r+1)/3.
    smooth = gaussian_blur(gray, float(np.sqrt(radius * (radius + 1) / 3.0)))
    low, high = background_level(smooth), float(np.percentile(smooth, 99.5))
    if high <= low:
        return 0, gray.shape[0], 0, gray.shape[1]
    rows, cols = np.nonzero(smooth > low + threshold * (high - low))
    if len(rows) == 0:
        return 0, gray.shape[0], 0, gray.shape[1]
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def _crop_pad_resize(
    array: np.ndarray, box: tuple[int, int, int, int], size: int, resample: Image.Resampling
) -> np.ndarray:
    top, bottom, left, right = box
    head = array[top:bottom, left:right]
    side = max(head.shape)
    square = np.zeros((side, side), dtype=np.float32)
    offset_y, offset_x = (side - head.shape[0]) // 2, (side - head.shape[1]) // 2
    square[offset_y : offset_y + head.shape[0], offset_x : offset_x + head.shape[1]] = head
    resized = Image.fromarray(square, mode="F").resize((size, size), resample)
    return np.asarray(resized, dtype=np.float32)


INTENSITY_MODES = ("equalise", "percentile")


@dataclass(frozen=True)
class Preprocessing:
    """How a model's inputs are made; saved beside the model so inference repeats it.

    ``intensity`` is the per-image normalisation: "equalise" maps the head's intensities to a
    uniform distribution by rank (histogram equalisation), so brightness and contrast, which
    differ by source and scanner, no longer tell the sources apart; "percentile" only divides
    by the 99.5th percentile (the behaviour of models trained before it existed).

    The defaults are the project's training defaults, and the one default anywhere: a bare
    .keras file (no record beside it) is read with them (`for_model`).
    """

    image_size: int
    skull_strip: bool = True
    intensity: str = "equalise"

    FILE_NAME = artifact_names.PREPROCESSING

    def __post_init__(self) -> None:
        if self.intensity not in INTENSITY_MODES:
            raise ValueError(f"intensity must be one of {INTENSITY_MODES}, got {self.intensity!r}")

    def save(self, folder: Path) -> Path:
        from brain_pipeline.core.artifacts import write_json

        return write_json(Path(folder) / artifact_names.PREPROCESSING, asdict(self))

    @classmethod
    def record_path(cls, model_path: Path) -> Path:
        """Where the record of a .keras file's preprocessing lives (beside it)."""
        return Path(model_path).with_name(artifact_names.PREPROCESSING)

    @classmethod
    def for_model(cls, model_path: Path, input_size: int) -> Preprocessing:
        """The one reader of a model's preprocessing: the record beside a .keras file, or for
        a bare model file the defaults at the model's input size.

        Records written before ``skull_strip`` or ``intensity`` existed describe what models
        did then: no stripping, percentile scaling.
        """
        record = cls.record_path(model_path)
        if record.exists():
            legacy = {"skull_strip": False, "intensity": "percentile"}
            return cls(**{**legacy, **json.loads(record.read_text())})
        return cls(image_size=input_size)

    def apply(self, image: Image.Image, mask: np.ndarray | None = None):
        """Preprocess one image (and mask) exactly as the tensor cache stores it."""
        tensor, moved = preprocess_with_mask(image, mask, self)
        # Round through float16 like the cache, so the gallery, `predict` and `explain` see
        # bit-identical inputs to evaluation and their predictions agree.
        return tensor.astype(np.float16).astype(np.float32), moved

    def cache_key(self, sha256s: Sequence[str]) -> str:
        """Names a tensor cache by the contents it holds and the preprocessing that made it."""
        settings = (PREPROCESSING_VERSION, self.image_size, self.skull_strip, self.intensity)
        digest = hashlib.sha256(":".join(map(str, settings)).encode())
        for sha in sha256s:
            digest.update(sha.encode())
        return digest.hexdigest()[:20]


def preprocess_image(image: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    """Grayscale, crop to head, pad square, resize, normalise: float32 (size, size, 1) in [0, 1]."""
    return preprocess_with_mask(image, None, preprocessing)[0]


def strip_skull(array: np.ndarray) -> np.ndarray:
    """Zero everything outside a rough brain mask (skull ring, scalp, background).

    The skull is the strongest "which dataset" cue there is (the Alzheimer source is
    skull-stripped, the tumour sources are not); removing it makes every source look alike
    outside the brain, so the model has to look inside it.
    """
    return array * estimate_brain_mask(array)[..., np.newaxis]


FOREGROUND_LEVEL = 0.02


def equalise_foreground(array: np.ndarray) -> np.ndarray:
    """Histogram equalisation of the foreground: each pixel above FOREGROUND_LEVEL becomes
    its mid-rank among them, scaled into (0.05, 1]; background stays 0.

    Tied values share one rank, so flat regions (clipped highlights) stay flat.
    """
    out = np.zeros_like(array)
    foreground = array > FOREGROUND_LEVEL
    values = array[foreground]
    if values.size == 0:
        return out
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    mid_rank = (np.cumsum(counts) - 0.5 * counts) / values.size
    out[foreground] = 0.05 + 0.95 * mid_rank[inverse]
    return out


def preprocess_with_mask(
    image: Image.Image, mask: np.ndarray | None, preprocessing: Preprocessing
) -> tuple[np.ndarray, np.ndarray | None]:
    """Preprocess an image and put a same-sized mask (e.g. a lesion) through the same geometry."""
    size = preprocessing.image_size
    gray = np.asarray(to_grayscale(image), dtype=np.float32) / 255.0
    box = head_bounding_box(gray)
    # Background brightness differs by source; removing it also matches the zero padding.
    level = background_level(gray)
    array = _crop_pad_resize(np.clip(gray - level, 0.0, None), box, size, Image.Resampling.BILINEAR)
    foreground = array[array > FOREGROUND_LEVEL]
    scale = float(np.percentile(foreground, 99.5)) if foreground.size else 1.0
    normalised = np.clip(array / max(scale, 1e-6), 0.0, 1.0)
    if preprocessing.skull_strip:
        normalised = strip_skull(normalised[..., np.newaxis])[..., 0]
    if preprocessing.intensity == "equalise":
        normalised = equalise_foreground(normalised)
    normalised = normalised[..., np.newaxis]
    if mask is None:
        return normalised, None
    return normalised, _move_mask(mask, gray, box, size)


def _move_mask(
    mask: np.ndarray, gray: np.ndarray, box: tuple[int, int, int, int], size: int
) -> np.ndarray:
    if mask.shape != gray.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the image's {gray.shape}")
    moved = _crop_pad_resize(mask.astype(np.float32), box, size, Image.Resampling.NEAREST)
    return moved > 0.5


def mask_to_model_geometry(image: Image.Image, mask: np.ndarray, size: int) -> np.ndarray:
    """Only the geometry of preprocess_with_mask: where ``mask`` lands in the model input.

    The image decides the crop; its intensities are not processed."""
    gray = np.asarray(to_grayscale(image), dtype=np.float32) / 255.0
    return _move_mask(mask, gray, head_bounding_box(gray), size)


def map_to_image_geometry(image: Image.Image, heatmap: np.ndarray) -> np.ndarray:
    """The inverse of the geometry: a (size, size) map of the model input carried back to
    ``image``'s own pixels (H, W) through the resize, the padding and the head crop;
    zero outside the head's box (the model never saw it)."""
    gray = np.asarray(to_grayscale(image), dtype=np.float32) / 255.0
    top, bottom, left, right = head_bounding_box(gray)
    height, width = bottom - top, right - left
    side = max(height, width)
    heat = np.asarray(heatmap, np.float32).squeeze()
    square = Image.fromarray(heat, mode="F").resize((side, side), Image.Resampling.BILINEAR)
    offset_y, offset_x = (side - height) // 2, (side - width) // 2
    out = np.zeros(gray.shape, np.float32)
    crop = np.asarray(square, np.float32)[offset_y : offset_y + height, offset_x : offset_x + width]
    out[top:bottom, left:right] = crop
    return out


def build_tensor_cache(
    files: Sequence[Path],
    sha256s: Sequence[str],
    preprocessing: Preprocessing,
    cache_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Preprocess every file once into a float16 memory-mapped array (N, size, size, 1).

    The file is named by the contents and the preprocessing, so later epochs and later
    retrains on the same images read it instead of decoding again, and memory stays flat:
    the array lives on disk and pages in as batches are read.
    """
    cache_path = Path(cache_dir) / f"tensors_{preprocessing.cache_key(sha256s)}.npy"
    if cache_path.exists():
        return np.load(cache_path, mmap_mode="r")
    size = preprocessing.image_size
    with atomic_path(cache_path) as tmp:
        array = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.float16, shape=(len(files), size, size, 1)
        )
        _reserve(tmp)
        for position, path in enumerate(files):
            array[position] = preprocess_image(load_image(Path(path)), preprocessing)
            if progress and ((position + 1) % 200 == 0 or position + 1 == len(files)):
                progress(position + 1, len(files))
        array.flush()
        del array
    return np.load(cache_path, mmap_mode="r")


def _reserve(path: Path) -> None:
    """Allocate a memory-mapped file's blocks now: on a full disk this raises ENOSPC here
    (an error that names the file) instead of killing the process with SIGBUS at the first
    write into a page the file system cannot back."""
    with open(path, "r+b") as handle:
        os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)


def class_indices(labels: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
    lookup: Mapping[str, int] = {name: i for i, name in enumerate(class_names)}
    unknown = sorted(set(labels) - set(lookup))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(class_names)}")
    return np.array([lookup[label] for label in labels], dtype=np.int64)
