"""External datasets: scored, never trained on, and cleared of copies of training images.

Public tumour sets copy each other heavily, so an "external" download often holds images the
model trained on. Each external image is checked against every image of the training pool
(all training datasets, before balancing and splitting) by the index's own definitions: the
same bytes, a thumbnail twin (cosine >= the near-duplicate threshold), or a verified re-saved
copy (contrast, crop, zoom, resize, rotation, JPEG). Copies are counted and left out of the
score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brain_pipeline.core.data import dedup, resaved

COPY_KINDS = ("exact_copy", "thumbnail_twin", "resaved_copy")


def scorable_rows(manifest: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """Readable, labelled rows of `datasets` (one per file; a content can appear twice)."""
    rows = manifest[manifest["dataset"].isin(datasets) & (manifest["status"] == "ok")]
    return rows[rows["target_class"].notna()].reset_index(drop=True)


def copies_of_training_pool(
    external: pd.DataFrame,
    pool: pd.DataFrame,
    threshold: float = dedup.DEFAULT_NEAR_DUPLICATE_COSINE,
    resaved_similarity: float | None = resaved.DEFAULT_RESAVED_SIMILARITY,
) -> pd.DataFrame:
    """Per external row (same order): which kind of copy of a training-pool image it is,
    and `excluded` (any). `external` and `pool` carry `sha256` and `thumbnail` (and
    `keypoints`, `detail` for re-saved copies)."""
    flags = pd.DataFrame(False, index=external.index, columns=[*COPY_KINDS, "excluded"])
    if external.empty or pool.empty:
        return flags
    pool = pool.drop_duplicates("sha256").reset_index(drop=True)
    flags["exact_copy"] = external["sha256"].isin(pool["sha256"]).to_numpy()
    flags["thumbnail_twin"] = ~flags["exact_copy"] & dedup.thumbnail_twins(
        pool, external, threshold
    )
    remaining = ~(flags["exact_copy"] | flags["thumbnail_twin"]).to_numpy()
    if resaved_similarity is not None and "keypoints" in external and remaining.any():
        candidates = external[remaining]
        together = pd.concat([pool, candidates], ignore_index=True)
        is_external = np.r_[np.zeros(len(pool), bool), np.ones(len(candidates), bool)]
        leaked = resaved.resaved_leaks(
            dedup.features_of(together), is_external, resaved.Acceptance(resaved_similarity)
        )
        flags.loc[candidates.index, "resaved_copy"] = leaked[is_external]
    flags["excluded"] = flags[list(COPY_KINDS)].any(axis=1)
    return flags


def groups_within(rows: pd.DataFrame, threshold: float = dedup.DEFAULT_NEAR_DUPLICATE_COSINE):
    """Near-duplicate group of each row inside one external set (thumbnail twins; the
    bootstrap's resampling unit), as strings."""
    if rows.empty:
        return np.array([], dtype=str)
    labels = dedup.near_duplicate_groups(dedup.thumbnail_matrix(rows["thumbnail"]), threshold)
    return np.asarray([f"x{label}" for label in labels])
