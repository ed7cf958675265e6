"""Ground-truth lesion masks of raw images: how they are written and read.

Each dataset's mask convention (mask_conventions.py) finds an image's mask when the manifest
is scanned; the manifest row records it (`lesion_mask`, relative to the convention's root).
The synthetic phantoms write theirs into a mirror folder (`lesion_mask_path`); the
explanation scores read them to check where the heatmaps point.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image

from brain_pipeline.core.data.sources import RawDataConfig
from brain_pipeline.core.imaging.preprocessing import (
    filesystem_path,
    load_image,
    mask_to_model_geometry,
)

# A lesion mask file is a label map: the tumour core, its oedema halo, and 0 elsewhere.
# Core-only readers threshold at 127, so binary 0/255 masks read the same in both regions.
CORE_VALUE = 255
HALO_VALUE = 96
# Which part of a lesion a mask covers: the core (the lesion itself), or the whole tumour,
# core and oedema halo, as in the BraTS "whole tumour" label.
LESION_REGIONS = ("core", "whole_tumour")
_REGION_THRESHOLD = {"core": 127, "whole_tumour": HALO_VALUE // 2}


def lesion_mask_path(masks_root: Path, dataset: str, relative_image_path: str) -> Path:
    """Where the lesion mask of ``dataset``/``relative_image_path`` lives under ``masks_root``.

    ``masks_root`` is the ``_lesion_masks`` folder; the mask keeps the image's
    relative path with its suffix replaced by ``.png``.
    """
    relative = PurePosixPath(str(relative_image_path).replace("\\", "/"))
    if not dataset or "/" in dataset or "\\" in dataset or dataset in (".", ".."):
        raise ValueError(f"dataset must be a single folder name, got {dataset!r}")
    if relative.is_absolute() or ".." in relative.parts or not relative.name:
        raise ValueError(
            f"relative_image_path must stay inside the dataset, got {relative_image_path!r}"
        )
    return Path(masks_root, dataset, *relative.with_suffix(".png").parts)


def read_lesion_mask(path: Path, region: str = "whole_tumour") -> np.ndarray:
    """One lesion mask file as a boolean (H, W) array of `region` (see LESION_REGIONS)."""
    if region not in LESION_REGIONS:
        raise ValueError(f"unknown lesion region {region!r}; expected one of {LESION_REGIONS}")
    return np.asarray(Image.open(path).convert("L")) > _REGION_THRESHOLD[region]


def original_with_mask(raw: RawDataConfig, row: pd.Series) -> tuple[Image.Image, np.ndarray | None]:
    """A manifest or index row's image as read, and its whole-tumour mask in the same pixels
    (None: the image has no mask)."""
    image = load_image(filesystem_path(raw.roots[row["dataset"]], row["path"]))
    mask = row.get("lesion_mask")
    if not isinstance(mask, str) or not mask:
        return image, None
    return image, read_lesion_mask(raw.mask_roots[row["dataset"]] / mask)


def lesion_masks_by_region(
    raw: RawDataConfig,
    rows: pd.DataFrame,
    image_size: int,
    regions: Sequence[str] = LESION_REGIONS,
) -> dict[str, list[np.ndarray | None]]:
    """Ground-truth lesion masks of some images (`rows`: dataset, path, lesion_mask) in
    model-input geometry, per region: for each of ``regions``, one mask or None (no mask)
    per row, from one read of each file.

    A region is "core" (the lesion itself) or "whole_tumour" (core and oedema halo; binary
    masks, and masks written before the halo was recorded, give the core for both). Only
    images with a mask are decoded (the image decides the crop).
    """
    for region in regions:
        if region not in LESION_REGIONS:
            raise ValueError(
                f"unknown lesion region {region!r}; expected one of {', '.join(LESION_REGIONS)}"
            )
    masks: dict[str, list[np.ndarray | None]] = {region: [] for region in regions}
    roots, mask_roots = raw.roots, raw.mask_roots
    recorded = rows["lesion_mask"] if "lesion_mask" in rows else [None] * len(rows)
    for dataset, relative, mask in zip(rows["dataset"], rows["path"], recorded, strict=True):
        if not isinstance(mask, str) or not mask:
            for region in regions:
                masks[region].append(None)
            continue
        mask_file = mask_roots[dataset] / mask
        labels = np.asarray(Image.open(mask_file).convert("L"))
        image = load_image(filesystem_path(roots[dataset], relative))
        if (labels.shape[1], labels.shape[0]) != image.size:
            raise ValueError(
                f"lesion mask {mask_file} is {labels.shape[1]}x{labels.shape[0]} but its image "
                f"{roots[dataset] / relative} is {image.size[0]}x{image.size[1]}: the files "
                "changed since the manifest was scanned; materialize the manifest again"
            )
        for region in regions:
            region_mask = labels > _REGION_THRESHOLD[region]
            masks[region].append(mask_to_model_geometry(image, region_mask, image_size))
    return masks
