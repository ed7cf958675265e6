"""Exact and near-duplicate images, and the class-balanced index built from unique contents.

Exact copies (same sha256) collapse into one record that keeps every source path. Near
duplicates (a resized copy, a neighbouring slice of the same subject) are grouped by the
cosine similarity of mean-centred 32x32 grayscale thumbnails; the group, not the image, is
the unit the splitter assigns, so no near-copy can sit on both sides of a split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from brain_pipeline.core.data.manifest import THUMBNAIL_SIDE

# Measured on the real Kaggle sets: 0.99 recovers ~one group per Alzheimer subject without
# chaining unrelated slices together (a 64-bit dHash at distance <= 4 merges 88% of images).
DEFAULT_NEAR_DUPLICATE_COSINE = 0.99


@dataclass(frozen=True)
class IndexReport:
    n_usable_files: int
    n_unique_contents: int
    n_exact_duplicate_files: int
    n_conflicting_contents: int
    n_near_duplicate_groups: int
    largest_group_size: int
    group_size_distribution: dict[str, int]  # group size -> number of groups, all unique contents
    counts_before_balancing: dict[str, int]
    counts_after_balancing: dict[str, int]


def collapse_exact_duplicates(manifest: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per unique content among usable rows; returns (unique, conflicting).

    A content seen under different target classes is a labelling conflict: it is excluded and
    returned separately so it can be reported.
    """
    usable = manifest[(manifest["status"] == "ok") & manifest["target_class"].notna()].copy()
    usable["source"] = usable["dataset"] + "/" + usable["path"]
    usable = usable.sort_values(["sha256", "dataset", "path"])
    grouped = usable.groupby("sha256", sort=True)
    first = grouped.first()
    first["sources"] = grouped["source"].agg(list)
    first["source_labels"] = grouped["source_label"].agg(list)
    first["n_copies"] = grouped.size()
    first["n_target_classes"] = grouped["target_class"].nunique()
    first = first.reset_index()
    conflicting = first[first["n_target_classes"] > 1].drop(columns="n_target_classes")
    unique = first[first["n_target_classes"] == 1].drop(columns="n_target_classes")
    return unique.reset_index(drop=True), conflicting.reset_index(drop=True)


def thumbnail_matrix(thumbnails: pd.Series) -> np.ndarray:
    """Stack thumbnail bytes into unit vectors after removing each image's mean."""
    side = THUMBNAIL_SIDE * THUMBNAIL_SIDE
    matrix = np.frombuffer(b"".join(thumbnails), dtype=np.uint8).reshape(-1, side)
    centred = matrix.astype(np.float32) - matrix.mean(axis=1, keepdims=True, dtype=np.float32)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)


def near_duplicate_groups(
    vectors: np.ndarray, threshold: float = DEFAULT_NEAR_DUPLICATE_COSINE, block: int = 2048
) -> np.ndarray:
    """Connected components of the graph 'cosine similarity >= threshold'; one label per row."""
    count = len(vectors)
    parent = np.arange(count)

    def find(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for start in range(0, count, block):
        similarities = vectors[start : start + block] @ vectors.T
        rows, cols = np.nonzero(similarities >= threshold)
        for row, col in zip(rows + start, cols, strict=True):
            if col > row:
                root_a, root_b = find(row), find(col)
                if root_a != root_b:
                    parent[max(root_a, root_b)] = min(root_a, root_b)
    return np.array([find(node) for node in range(count)])


def assign_group_ids(unique: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Add `group_id`: a stable key per near-duplicate group (its smallest member hash).

    Keying the group by content, not by position, keeps the id unchanged when unrelated images
    are added, which the stable splitter relies on.
    """
    labelled = unique.copy()
    if labelled.empty:
        labelled["group_id"] = pd.Series(dtype=str)
        return labelled
    components = near_duplicate_groups(thumbnail_matrix(labelled["thumbnail"]), threshold)
    labelled["_component"] = components
    smallest_hash = labelled.groupby("_component")["sha256"].transform("min")
    labelled["group_id"] = "g" + smallest_hash.str[:16]
    return labelled.drop(columns="_component")


def balance_classes(unique: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Randomly downsample every class to the size of the smallest one (the study's method).

    "Random" is a seeded hash of each content: every class keeps its images with the lowest
    hash, so adding images to a class displaces few of the images already kept, where a fresh
    random sample would reshuffle them all.
    """
    smallest = int(unique["target_class"].value_counts().min())
    order = unique["sha256"].map(lambda sha: hashlib.sha256(f"{seed}:{sha}".encode()).hexdigest())
    ranked = unique.assign(_order=order).sort_values("_order")
    kept = ranked.groupby("target_class", sort=True).head(smallest)
    return (
        kept.drop(columns="_order").sort_values(["target_class", "sha256"]).reset_index(drop=True)
    )


@dataclass(frozen=True)
class IndexSettings:
    """How the balanced index is built; `defs.ingestion.IndexConfig` mirrors these defaults."""

    seed: int = 0
    near_duplicate_cosine: float = DEFAULT_NEAR_DUPLICATE_COSINE
    balance_classes: bool = True


def build_balanced_index(
    manifest: pd.DataFrame,
    *,
    seed: int,
    near_duplicate_cosine: float = DEFAULT_NEAR_DUPLICATE_COSINE,
    balance: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, IndexReport]:
    """Unique, grouped, class-balanced index; also returns the excluded conflicts."""
    unique, conflicting = collapse_exact_duplicates(manifest)
    if unique.empty:
        raise ValueError(
            "no usable images: every file was rejected, skipped or unmapped; see the "
            "image_manifest `reason` column"
        )
    grouped = assign_group_ids(unique, near_duplicate_cosine)
    index = balance_classes(grouped, seed) if balance else grouped
    group_sizes = grouped["group_id"].value_counts()
    usable_files = int(grouped["n_copies"].sum() + conflicting["n_copies"].sum())
    report = IndexReport(
        n_usable_files=usable_files,
        n_unique_contents=int(len(grouped)),
        # Redundant copies: files beyond the first of each (non-conflicting) content.
        n_exact_duplicate_files=int(grouped["n_copies"].sum()) - int(len(grouped)),
        n_conflicting_contents=int(len(conflicting)),
        n_near_duplicate_groups=int(len(group_sizes)),
        largest_group_size=int(group_sizes.max()),
        group_size_distribution={
            str(size): int(n) for size, n in group_sizes.value_counts().sort_index().items()
        },
        counts_before_balancing=_class_counts(grouped),
        counts_after_balancing=_class_counts(index),
    )
    return index.drop(columns="thumbnail"), conflicting.drop(columns="thumbnail"), report


def _class_counts(frame: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in frame["target_class"].value_counts().sort_index().items()}


def cross_split_near_duplicates(
    splits: pd.DataFrame,
    thumbnails: pd.Series,
    threshold: float = DEFAULT_NEAR_DUPLICATE_COSINE,
    block: int = 2048,
) -> int:
    """How many val/test images have a near-duplicate (cosine >= threshold) in train.

    An independent check of the split: it compares images directly instead of trusting the
    group ids. `thumbnails` maps sha256 -> thumbnail bytes (from the manifest).
    """
    train = splits[splits["split"] == "train"]
    held_out = splits[splits["split"] != "train"]
    if train.empty or held_out.empty:
        return 0
    # Images missing from `thumbnails` (a newer manifest without them) cannot be compared.
    train_vectors = thumbnail_matrix(thumbnails.reindex(train["sha256"]).dropna())
    held_vectors = thumbnail_matrix(thumbnails.reindex(held_out["sha256"]).dropna())
    if len(train_vectors) == 0 or len(held_vectors) == 0:
        return 0
    leaks = 0
    for start in range(0, len(held_vectors), block):
        similarity = held_vectors[start : start + block] @ train_vectors.T
        leaks += int((similarity.max(axis=1) >= threshold).sum())
    return leaks
