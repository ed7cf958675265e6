"""The image manifest: one row for every file seen in every raw dataset.

A row says what the file is (content hash, format, size, mode), which class its folder maps
to, whose scan it is (`subject`, where the path says) and its lesion mask (`lesion_mask`,
where the dataset's mask convention finds one; `lesion_mask_problem` where one was found
but cannot be used), and whether it can be used (`status` ok / rejected / skipped, with
a `reason`). Nothing is dropped silently: a file that cannot be read is a `rejected` row, a
file that is not an image at all, or a lesion mask, is a `skipped` row.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image, ImageOps

from brain_pipeline.core.data import subjects
from brain_pipeline.core.data.mask_conventions import mask_size_problem
from brain_pipeline.core.data.resaved import local_features
from brain_pipeline.core.data.sources import (
    IMAGE_SUFFIXES,
    DatasetSpec,
    iter_dataset_files,
    source_label,
)
from brain_pipeline.core.imaging.grayscale import to_grayscale

THUMBNAIL_SIDE = 32
# Far above any real MRI slice; larger images are refused as potential decompression bombs.
MAX_IMAGE_PIXELS = 50_000_000

_TEXT, _INT, _BLOB = pa.large_string(), pa.int64(), pa.binary()
# One fixed schema for every manifest part, so that a column with no value in one dataset
# (every file unmapped: no target_class; every file skipped: no sha256) keeps its type and
# any mix of datasets combines.
MANIFEST_SCHEMA = pa.schema(
    [
        ("dataset", _TEXT),
        ("path", _TEXT),
        ("source_label", _TEXT),
        ("target_class", _TEXT),
        ("subject", _TEXT),
        ("lesion_mask", _TEXT),
        ("lesion_mask_problem", _TEXT),
        ("sha256", _TEXT),
        ("format", _TEXT),
        ("width", _INT),
        ("height", _INT),
        ("mode", _TEXT),
        ("bytes", _INT),
        ("mtime_ns", _INT),
        ("status", _TEXT),
        ("reason", _TEXT),
        ("note", _TEXT),
        ("thumbnail", _BLOB),
        ("keypoints", _BLOB),
        ("detail", _BLOB),
    ]
)
MANIFEST_COLUMNS = list(MANIFEST_SCHEMA.names)
# Read from the path and the dataset's settings on every scan, never reused from an old one.
PATH_FACTS = ("source_label", "target_class", "subject", "lesion_mask", "lesion_mask_problem")


@dataclass(frozen=True)
class ImageFacts:
    format: str | None
    width: int | None
    height: int | None
    mode: str | None
    note: str
    thumbnail: bytes | None
    keypoints: bytes | None  # resaved.LocalFeatures, as stored
    detail: bytes | None


class UnreadableImage(Exception):
    """The file has an image suffix but cannot be decoded; the message is the reason."""


def display_path(relative: str) -> str:
    """File names may hold bytes that are not UTF-8: keep them visible, escaped, not lost."""
    return os.fsencode(relative).decode("utf-8", errors="backslashreplace")


def inspect_image(data: bytes) -> ImageFacts:
    """Decode image bytes fully (so truncation is caught) and describe them."""
    if not data:
        raise UnreadableImage("empty file (0 bytes)")
    with warnings.catch_warnings():
        # Pillow warns, rather than raises, for images between 1x and 2x the pixel limit.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                facts_format = image.format
                width, height = image.size
                mode = image.mode
                notes = []
                if getattr(image, "n_frames", 1) > 1:
                    notes.append(f"animated ({image.n_frames} frames), first frame used")
                image.load()
                oriented = ImageOps.exif_transpose(image)
                if _has_rotation(image):
                    notes.append("EXIF orientation applied")
                if mode not in ("L", "RGB"):
                    notes.append(f"mode {mode} converted to grayscale")
                gray = to_grayscale(oriented)
                thumbnail = grayscale_thumbnail(gray)
                keypoints, detail = local_features(gray).to_bytes()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UnreadableImage(f"refused as a decompression bomb: {exc}") from exc
        except Image.UnidentifiedImageError as exc:
            raise UnreadableImage(
                "not a recognised image format (content is not an image)"
            ) from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise UnreadableImage(f"corrupt or truncated image: {exc}") from exc
    return ImageFacts(
        facts_format, width, height, mode, "; ".join(notes), thumbnail, keypoints, detail
    )


def _has_rotation(image: Image.Image) -> bool:
    return image.getexif().get(0x0112, 1) not in (1, None)


def grayscale_thumbnail(image: Image.Image) -> bytes:
    small = to_grayscale(image).resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.uint8).tobytes()


def _manifest_row(spec: DatasetSpec, relative: str, mask_for: str | None = None) -> dict:
    """The row of one file; `mask_for` is set (to its image, or "") where it is a lesion mask."""
    full_path = spec.root / relative
    stat = full_path.stat()
    row = {
        "dataset": spec.name,
        "path": display_path(relative),
        "source_label": None,
        "target_class": None,
        "subject": None,
        "lesion_mask": None,
        "lesion_mask_problem": None,
        "sha256": None,
        "format": None,
        "width": None,
        "height": None,
        "mode": None,
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "status": "ok",
        "reason": "",
        "note": "",
        "thumbnail": None,
        "keypoints": None,
        "detail": None,
    }
    if Path(relative).suffix.lower() not in IMAGE_SUFFIXES:
        row.update(status="skipped", reason=f"not an image file ({Path(relative).name})")
        return row
    if mask_for is not None:
        whose = f"of {display_path(mask_for)}" if mask_for else "with no image beside it"
        row.update(status="skipped", reason=f"lesion mask {whose}")
        return row
    data = full_path.read_bytes()
    row["sha256"] = hashlib.sha256(data).hexdigest()
    try:
        facts = inspect_image(data)
    except UnreadableImage as exc:
        row.update(status="rejected", reason=str(exc))
        return row
    row.update(
        format=facts.format,
        width=facts.width,
        height=facts.height,
        mode=facts.mode,
        note=facts.note,
        thumbnail=facts.thumbnail,
        keypoints=facts.keypoints,
        detail=facts.detail,
    )
    return row


def with_labels(row: dict, spec: DatasetSpec, relative: str, mask: str | None = None) -> dict:
    """Set the path facts (PATH_FACTS) from today's settings: the class map, the dataset's
    subject pattern, the image's lesion mask (never reused from an old scan; refused, with a
    note naming it, where its size is not the image's)."""
    label = source_label(relative, spec.class_map)
    target = spec.class_map.get(label) if label else None
    row = {
        **row,
        "source_label": label,
        "target_class": target or None,
        "subject": subjects.subject_of(display_path(relative), spec.group_pattern),
        "lesion_mask": display_path(mask) if mask else None,
        "lesion_mask_problem": None,
    }
    if mask and row["status"] == "ok":
        mask_file = spec.lesion_masks.root(spec.root) / mask
        problem = mask_size_problem(mask_file, (row["width"], row["height"]))
        if problem:
            row.update(lesion_mask=None, lesion_mask_problem=problem)
    if row["status"] == "ok":
        if label is None:
            row["reason"] = "unmapped: no folder in its path names a known class"
        elif not target:
            row["reason"] = f"unmapped: folder {label!r} is ignored by the class map"
        else:
            row["reason"] = ""
    return row


def build_manifest(
    datasets: Iterable[DatasetSpec],
    previous: pd.DataFrame | None = None,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, int]:
    """Scan every dataset; return the manifest and how many files were decoded this time.

    Rows of `previous` whose file has the same dataset, path, size and mtime are reused, so a
    re-scan after adding N files decodes only those N.
    """
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    reusable = _reusable_rows(previous)
    rows: list[dict | None] = []
    to_decode: list[tuple[int, DatasetSpec, str, str | None, str | None]] = []
    for spec in datasets:
        files = list(iter_dataset_files(spec.root))
        folder = spec.lesion_masks.folder
        mirror = list(iter_dataset_files(folder)) if folder is not None else []
        mask_of, image_of = spec.lesion_masks.pair(spec.root, files, IMAGE_SUFFIXES, mirror)
        for relative in files:
            # A mask's row is never reused: an old scan may have taken it for an image.
            mask_for = (image_of[relative] or "") if relative in image_of else None
            stat = (spec.root / relative).stat()
            key = (spec.name, display_path(relative), stat.st_size, stat.st_mtime_ns)
            if key in reusable and mask_for is None:
                # Decoded facts are reused; labels follow the class map of today.
                rows.append(with_labels(reusable[key], spec, relative, mask_of.get(relative)))
            else:
                to_decode.append((len(rows), spec, relative, mask_for, mask_of.get(relative)))
                rows.append(None)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = pool.map(
            lambda job: with_labels(_manifest_row(*job[1:4]), job[1], job[2], job[4]), to_decode
        )
        for done, (job, row) in enumerate(zip(to_decode, results, strict=True), 1):
            rows[job[0]] = row
            if progress and (done % 500 == 0 or done == len(to_decode)):
                progress(done, len(to_decode))
    frame = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    for column in ("width", "height"):
        frame[column] = frame[column].astype("Int64")
    return frame, len(to_decode)


def _reusable_rows(previous: pd.DataFrame | None) -> dict[tuple, dict]:
    """The decoded facts of an earlier scan, by (dataset, path, size, mtime); the path facts
    are set again, so a manifest from before one of them existed is reused too."""
    decoded = [column for column in MANIFEST_COLUMNS if column not in PATH_FACTS]
    if previous is None or previous.empty or not set(decoded) <= set(previous.columns):
        return {}  # nothing to reuse, or a manifest from before a decoded column was added
    records = previous[decoded].to_dict("records")
    return {(r["dataset"], r["path"], r["bytes"], r["mtime_ns"]): r for r in records}


def manifest_summary(manifest: pd.DataFrame) -> dict:
    """Counts for metadata: files per status, rejects by reason, unmapped folders."""
    rejected = manifest[manifest["status"] == "rejected"]
    unmapped = manifest[(manifest["status"] == "ok") & manifest["target_class"].isna()]
    return {
        "n_files": int(len(manifest)),
        "n_ok": int((manifest["status"] == "ok").sum()),
        "n_rejected": int(len(rejected)),
        "n_skipped": int((manifest["status"] == "skipped").sum()),
        "n_unmapped": int(len(unmapped)),
        "rejects_by_reason": rejected["reason"].str.split(":").str[0].value_counts().to_dict(),
        "unmapped_folders": sorted(
            {str(Path(p).parent) for p in unmapped["dataset"] + "/" + unmapped["path"]}
        ),
        "n_lesion_masks": int(manifest["lesion_mask"].notna().sum()),
        # A mask that was found but cannot be used, each naming the mask and its size.
        "lesion_mask_problems": manifest["lesion_mask_problem"].dropna().tolist()[:20],
    }


def readable_thumbnails(
    manifest: pd.DataFrame, columns: tuple[str, ...] = ("thumbnail",)
) -> pd.DataFrame:
    """sha256 -> thumbnail (and other per-content columns) of every readable content."""
    readable = manifest[manifest["status"] == "ok"]
    return readable[["sha256", *columns]].drop_duplicates("sha256")
