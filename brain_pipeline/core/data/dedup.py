"""Exact and near-duplicate images, and the class-balanced index built from unique contents.

Exact copies (same sha256) collapse into one record that keeps every source path. Two images
are near duplicates, and share a group, when either
- their mean-centred 32x32 grayscale thumbnails have a cosine similarity of at least 0.99 (a
  resized or re-encoded copy, a neighbouring slice of the same subject), or
- one is a re-saved copy of the other: another contrast, gamma or window, a crop or zoom, a
  resize, a JPEG re-encode (`resaved`: local features, verified by alignment).
Groups are the connected components of that relation. The group, not the image, is the unit
the splitter assigns, so no near-copy can sit on both sides of a split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from brain_pipeline.core.data import neighbours, resaved
from brain_pipeline.core.data.manifest import THUMBNAIL_SIDE
from brain_pipeline.core.data.neighbours import unit_vectors

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
    n_thumbnail_groups: int  # groups by the thumbnail criterion alone
    n_resaved_links: int  # verified re-saved copies that merged two thumbnail groups
    largest_group_size: int
    group_size_distribution: dict[str, int]  # group size -> number of groups, all unique contents
    counts_before_balancing: dict[str, int]
    counts_after_balancing: dict[str, int]
    # Groups by image content alone (thumbnails, re-saved copies), before subject ids joined
    # them; the joins the ids made (before the kept rows' search for re-saved copies); the
    # subjects named; groups per dataset, all contents.
    n_content_groups: int = 0
    n_subject_joins: int = 0
    n_subjects: int = 0
    groups_per_dataset: dict[str, int] = field(default_factory=dict)


def collapse_exact_duplicates(manifest: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per unique content among usable rows; returns (unique, conflicting).

    A content seen under different target classes is a labelling conflict: it is excluded and
    returned separately so it can be reported.
    """
    usable = manifest[(manifest["status"] == "ok") & manifest["target_class"].notna()].copy()
    usable["source"] = usable["dataset"] + "/" + usable["path"]
    # A subject id means something within its dataset only.
    subjects = usable["subject"] if "subject" in usable else [None] * len(usable)
    usable["_subject"] = [
        f"{dataset}:{subject}" if isinstance(subject, str) and subject else None
        for dataset, subject in zip(usable["dataset"], subjects, strict=True)
    ]
    usable = usable.sort_values(["sha256", "dataset", "path"])
    grouped = usable.groupby("sha256", sort=True)
    first = grouped.first().drop(columns="_subject")
    first["sources"] = grouped["source"].agg(list)
    first["subjects"] = grouped["_subject"].agg(lambda names: sorted(set(names.dropna())))
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
    return unit_vectors(np.frombuffer(b"".join(thumbnails), dtype=np.uint8).reshape(-1, side))


def near_duplicate_groups(
    vectors: np.ndarray, threshold: float = DEFAULT_NEAR_DUPLICATE_COSINE, block: int = 2048
) -> np.ndarray:
    """Connected components of 'cosine similarity >= threshold' by comparing every pair:
    O(n^2), the exact reference that `neighbours.NeighbourIndex` is tested against."""
    pairs = []
    for start in range(0, len(vectors), block):
        rows, cols = np.nonzero(vectors[start : start + block] @ vectors.T >= threshold)
        pairs.append(np.stack([rows + start, cols], axis=1))
    return neighbours.components(len(vectors), np.concatenate(pairs or [np.zeros((0, 2), int)]))


def thumbnails_from_column(frame: pd.DataFrame) -> Callable[[np.ndarray], np.ndarray]:
    """`thumbnail_of(shas)` for a frame with `sha256` and `thumbnail` columns."""
    by_sha = frame.drop_duplicates("sha256").set_index("sha256")["thumbnail"]
    side = THUMBNAIL_SIDE * THUMBNAIL_SIDE
    return lambda shas: np.frombuffer(
        b"".join(by_sha.loc[np.asarray(shas).astype(str)]), np.uint8
    ).reshape(-1, side)


def thumbnail_neighbours(
    keys: np.ndarray,
    thumbnail_of: Callable[[np.ndarray], np.ndarray],
    threshold: float,
    previous: neighbours.NeighbourIndex | None = None,
) -> tuple[neighbours.NeighbourIndex, dict]:
    """The neighbour index of `keys`: `previous` brought up to date (only the added images
    are searched), or a new one when there is none, its threshold differs, or the additions
    outnumber what it holds (its cells were fitted to other data)."""
    if previous is not None and previous.threshold == threshold:
        live = previous.keys[previous.alive].astype(str)
        if (~np.isin(keys, live)).sum() <= len(live):
            return previous, {"mode": "incremental", **previous.sync(keys, thumbnail_of)}
    built = neighbours.NeighbourIndex.build(thumbnail_of(keys), keys, threshold)
    return built, {"mode": "built", "added": len(keys), "removed": 0, "new_pairs": len(built.pairs)}


def features_of(frame: pd.DataFrame) -> list[resaved.LocalFeatures]:
    """The stored local features (manifest columns `keypoints`, `detail`) of each row."""
    return [
        resaved.LocalFeatures.from_bytes(k, d)
        for k, d in zip(frame["keypoints"], frame["detail"], strict=True)
    ]


def assign_group_ids(
    unique: pd.DataFrame,
    threshold: float,
    resaved_similarity: float | None = None,
    thumbnail_of: Callable[[np.ndarray], np.ndarray] | None = None,
    previous: neighbours.NeighbourIndex | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, neighbours.NeighbourIndex | None, dict]:
    """Add `group_id`: a stable key per near-duplicate group (its smallest member hash).

    Thumbnail pairs come from the neighbour index (`previous`, updated, or a new one; also
    returned with what the update did); `thumbnail_of(shas)` supplies thumbnails (default:
    the frame's `thumbnail` column). With `resaved_similarity`, thumbnail groups joined by a
    verified re-saved copy merge; the second frame lists those links (sha256 of both images,
    inliers, similarity). Keying the group by content, not by position, keeps the id
    unchanged when unrelated images are added, which the stable splitter relies on.
    """
    labelled = unique.copy()
    links = pd.DataFrame(columns=["first", "second", "inliers", "similarity"])
    if labelled.empty:
        labelled["group_id"] = pd.Series(dtype=str)
        return labelled, links, previous, {"mode": "empty"}
    keys = labelled["sha256"].to_numpy().astype(str)
    thumbnail_of = thumbnail_of or thumbnails_from_column(labelled)
    index, update = thumbnail_neighbours(keys, thumbnail_of, threshold, previous)
    components = index.labels(keys)
    labelled["_thumbnail_group"] = components
    if resaved_similarity is not None:
        components, links = resaved.link_resaved_copies(
            features_of(labelled), components, resaved.Acceptance(resaved_similarity)
        )
        sha = labelled["sha256"].to_numpy()
        links = links.assign(first=sha[links["first"]], second=sha[links["second"]])
    labelled["_content_group"] = components
    labelled["_component"] = join_subjects(components, labelled["subjects"])
    labelled["_subject_group"] = labelled["_component"]
    smallest_hash = labelled.groupby("_component")["sha256"].transform("min")
    labelled["group_id"] = "g" + smallest_hash.str[:16]
    return labelled.drop(columns="_component"), links, index, update


def join_subjects(components: np.ndarray, subjects: pd.Series) -> np.ndarray:
    """Components merged so that every image of one subject shares one (`subjects`: the
    dataset-qualified subject ids of each row's copies, often none)."""
    first_of_component: dict[int, int] = {}
    first_of_subject: dict[str, int] = {}
    pairs = []
    for row, (component, names) in enumerate(zip(components, subjects, strict=True)):
        pairs.append((row, first_of_component.setdefault(int(component), row)))
        pairs.extend((row, first_of_subject.setdefault(name, row)) for name in names)
    return neighbours.components(len(components), np.asarray(pairs, dtype=np.int64))


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


class BalancedIndex(NamedTuple):
    index: pd.DataFrame
    conflicts: pd.DataFrame
    report: IndexReport
    links: pd.DataFrame  # re-saved copies that merged two thumbnail groups
    neighbours: neighbours.NeighbourIndex
    neighbour_update: dict  # how the neighbour index was made: built, or updated (counts)


@dataclass(frozen=True)
class IndexSettings:
    """How the balanced index is built; `defs.ingestion.IndexConfig` mirrors these defaults."""

    seed: int = 0
    near_duplicate_cosine: float = DEFAULT_NEAR_DUPLICATE_COSINE
    detect_resaved_copies: bool = True
    resaved_similarity: float = resaved.DEFAULT_RESAVED_SIMILARITY
    balance_classes: bool = True


_FEATURE_COLUMNS = ("thumbnail", "keypoints", "detail")


def build_balanced_index(
    manifest: pd.DataFrame,
    settings: IndexSettings = IndexSettings(),  # noqa: B008 (frozen, so safe to share)
    *,
    thumbnail_of: Callable[[np.ndarray], np.ndarray] | None = None,
    previous_neighbours: neighbours.NeighbourIndex | None = None,
) -> BalancedIndex:
    """Unique, grouped, class-balanced index; also returns the excluded conflicts, the report,
    the re-saved copies that merged groups (`detect_resaved_copies=False` turns that off) and
    the thumbnail neighbour index (`previous_neighbours` is updated rather than rebuilt;
    `thumbnail_of(shas)` supplies thumbnails when the manifest has no `thumbnail` column)."""
    seed, balance = settings.seed, settings.balance_classes
    resaved_similarity = settings.resaved_similarity if settings.detect_resaved_copies else None
    if resaved_similarity is not None and not {"keypoints", "detail"} <= set(manifest.columns):
        raise ValueError(
            "the manifest has no `keypoints`/`detail` columns (it predates re-saved copy "
            "detection): materialize image_manifest again, or set detect_resaved_copies=false"
        )
    unique, conflicting = collapse_exact_duplicates(manifest)
    if unique.empty:
        raise ValueError(
            "no usable images: every file was rejected, skipped or unmapped; see the "
            "image_manifest `reason` column"
        )
    grouped, links, neighbour_index, update = assign_group_ids(
        unique,
        settings.near_duplicate_cosine,
        resaved_similarity,
        thumbnail_of,
        previous_neighbours,
    )
    index = balance_classes(grouped, seed) if balance else grouped
    if balance and resaved_similarity is not None:
        grouped, index, kept_links = link_kept_copies(grouped, index, resaved_similarity)
        links = pd.concat([links, kept_links], ignore_index=True)
    group_sizes = grouped["group_id"].value_counts()
    usable_files = int(grouped["n_copies"].sum() + conflicting["n_copies"].sum())
    report = IndexReport(
        n_usable_files=usable_files,
        n_unique_contents=int(len(grouped)),
        # Redundant copies: files beyond the first of each (non-conflicting) content.
        n_exact_duplicate_files=int(grouped["n_copies"].sum()) - int(len(grouped)),
        n_conflicting_contents=int(len(conflicting)),
        n_near_duplicate_groups=int(len(group_sizes)),
        n_thumbnail_groups=int(grouped["_thumbnail_group"].nunique()),
        n_resaved_links=int(len(links)),
        largest_group_size=int(group_sizes.max()),
        group_size_distribution={
            str(size): int(n) for size, n in group_sizes.value_counts().sort_index().items()
        },
        counts_before_balancing=_class_counts(grouped),
        counts_after_balancing=_class_counts(index),
        n_content_groups=int(grouped["_content_group"].nunique()),
        n_subject_joins=int(grouped["_content_group"].nunique())
        - int(grouped["_subject_group"].nunique()),
        n_subjects=len({name for names in grouped["subjects"] for name in names}),
        groups_per_dataset={
            str(k): int(v) for k, v in grouped.groupby("dataset")["group_id"].nunique().items()
        },
    )
    helpers = (*_FEATURE_COLUMNS, "_thumbnail_group", "_content_group", "_subject_group")
    drop = [c for c in helpers if c in grouped.columns]
    conflicts = conflicting.drop(columns=[c for c in _FEATURE_COLUMNS if c in conflicting])
    return BalancedIndex(
        index.drop(columns=drop), conflicts, report, links, neighbour_index, update
    )


def link_kept_copies(
    grouped: pd.DataFrame, index: pd.DataFrame, resaved_similarity: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Search re-saved copies again among the rows balancing kept, and merge their groups.

    The search over every unique content votes with each descriptor's few nearest
    descriptors, and near-identical slices (most of them dropped by balancing) can take all
    of those places, so a copy found among the kept rows (what the splits, and the split
    check, compare) can be missed there. Returns (grouped, index, links), group ids
    relabelled: a merged group takes the smallest id of the groups it joins, which is its
    smallest member hash, as before.
    """
    labels, ids = pd.factorize(index["group_id"])
    merged, links = resaved.link_resaved_copies(
        features_of(index), labels, resaved.Acceptance(resaved_similarity)
    )
    if links.empty:
        return grouped, index, links
    smallest = pd.Series(ids[labels]).groupby(merged).transform("min").to_numpy()
    renamed = dict(zip(ids[labels], smallest, strict=True))

    def relabel(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(group_id=frame["group_id"].map(renamed).fillna(frame["group_id"]))

    sha = index["sha256"].to_numpy()
    links = links.assign(first=sha[links["first"]], second=sha[links["second"]])
    return relabel(grouped), relabel(index), links


def _class_counts(frame: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in frame["target_class"].value_counts().sort_index().items()}


def thumbnail_twins(
    train: pd.DataFrame, held_out: pd.DataFrame, threshold: float, block: int = 2048
) -> np.ndarray:
    """Per held-out row: does a training row reach the thumbnail cosine threshold?"""
    train_vectors = thumbnail_matrix(train["thumbnail"])
    held_vectors = thumbnail_matrix(held_out["thumbnail"])
    flags = np.zeros(len(held_vectors), dtype=bool)
    for start in range(0, len(held_vectors), block):
        similarity = held_vectors[start : start + block] @ train_vectors.T
        flags[start : start + block] = similarity.max(axis=1) >= threshold
    return flags


def cross_split_near_duplicates(
    splits: pd.DataFrame,
    contents: pd.DataFrame,
    threshold: float = DEFAULT_NEAR_DUPLICATE_COSINE,
    resaved_similarity: float | None = resaved.DEFAULT_RESAVED_SIMILARITY,
) -> dict[str, int]:
    """How many val/test images have a near duplicate in train, by each criterion.

    An independent check of the split: it compares images directly instead of trusting the
    group ids. `contents` is indexed by sha256 with the manifest's `thumbnail` (and, for
    re-saved copies, `keypoints` and `detail`) columns; images missing from it (a newer
    manifest without them) cannot be compared. Returns `thumbnail_twins`, `resaved_copies`
    and `held_out_with_a_near_duplicate` (either; each image counted once).
    """
    rows = splits[["sha256", "split"]].merge(contents, left_on="sha256", right_index=True)
    rows = rows.dropna(subset=["thumbnail"]).reset_index(drop=True)
    is_held_out = (rows["split"] != "train").to_numpy()
    counts = {"thumbnail_twins": 0, "resaved_copies": 0, "held_out_with_a_near_duplicate": 0}
    if is_held_out.all() or not is_held_out.any():
        return counts
    twins = thumbnail_twins(rows[~is_held_out], rows[is_held_out], threshold)
    resaved_flags = np.zeros(len(twins), dtype=bool)
    if resaved_similarity is not None and "keypoints" in rows:
        rule = resaved.Acceptance(resaved_similarity)
        leaked = resaved.resaved_leaks(features_of(rows), is_held_out, rule)
        resaved_flags = leaked[is_held_out]
    counts["thumbnail_twins"] = int(twins.sum())
    counts["resaved_copies"] = int(resaved_flags.sum())
    counts["held_out_with_a_near_duplicate"] = int((twins | resaved_flags).sum())
    return counts
