"""Tables and figures that summarise a stage's output for a person reading the UI."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from brain_pipeline.core import plots
from brain_pipeline.core.data.resaved import detail_pixels
from brain_pipeline.core.imaging.preprocessing import (
    Preprocessing,
    filesystem_path,
    load_image,
    preprocess_image,
)

SAMPLE_SIDE = 96


def manifest_tables(manifest: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Files per dataset and class; formats, modes and how many distinct sizes each has."""
    counts = pd.crosstab(manifest["dataset"], manifest["target_class"].fillna("(unmapped)"))
    sizes = manifest.dropna(subset=["width"]).assign(
        size=lambda f: f["width"].astype(str) + "x" + f["height"].astype(str)
    )
    formats = sizes.groupby(["dataset", "format", "mode"]).agg(
        images=("sha256", "size"), distinct_sizes=("size", "nunique")
    )
    return counts, formats


def counts_by_stage(
    manifest: pd.DataFrame, index: pd.DataFrame, unique_counts: Mapping[str, int]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Images per dataset and class, then per class: usable files, unique, after balancing."""
    usable = manifest[(manifest["status"] == "ok") & manifest["target_class"].notna()]
    per_dataset = (
        pd.DataFrame(
            {
                "files": usable.groupby(["dataset", "target_class"]).size(),
                "after balancing": index.groupby(["dataset", "target_class"]).size(),
            }
        )
        .fillna(0)
        .astype(int)
    )
    overall = (
        pd.DataFrame(
            {
                "files": usable["target_class"].value_counts(),
                "unique": pd.Series(dict(unique_counts), dtype="int64"),
                "after balancing": index["target_class"].value_counts(),
            }
        )
        .fillna(0)
        .astype(int)
    )
    return per_dataset, overall


def largest_groups(index: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """The `n` largest near-duplicate groups with their class, dataset and one example."""
    return (
        index.groupby("group_id")
        .agg(
            size=("sha256", "size"),
            target_class=("target_class", "first"),
            example=("path", "first"),
            dataset=("dataset", "first"),
        )
        .sort_values("size", ascending=False)
        .head(n)
    )


def sample_grid(
    frame: pd.DataFrame, roots: Mapping[str, Path], seed: int, by: str, per_group: int = 6
):
    """A row of preprocessed samples for each value of `by` (class, or source dataset)."""
    images, titles = [], []
    for _, members in frame.groupby(by, sort=True):
        shown = members.sample(n=min(per_group, len(members)), random_state=seed)
        for _, row in shown.iterrows():
            image = load_image(filesystem_path(roots[row["dataset"]], row["path"]))
            images.append(preprocess_image(image, Preprocessing(SAMPLE_SIDE, skull_strip=False)))
            titles.append(f"{row['target_class']}\n{row['dataset']}")
        blanks = per_group - len(shown)
        images.extend([np.zeros((SAMPLE_SIDE, SAMPLE_SIDE, 1), np.float32)] * blanks)
        titles.extend([""] * blanks)
    return plots.image_grid(
        images, titles, columns=per_group, title=f"Samples per {by}, as the model sees them"
    )


def resaved_pairs_figure(links: pd.DataFrame, details: pd.Series, shown: int = 6):
    """Side by side, the strongest and weakest re-saved copies that merged two groups, as
    their detail thumbnails (`details` maps sha256 -> detail PNG bytes)."""
    ordered = links.sort_values("similarity", ascending=False)
    picked = pd.concat([ordered.head(shown // 2), ordered.tail(shown - shown // 2)])
    picked = picked[~picked.index.duplicated()]
    images, titles = [], []
    for _, link in picked.iterrows():
        for side in ("first", "second"):
            pixels = detail_pixels(details[link[side]])
            images.append(pixels.astype(np.float32) / 255.0)
            titles.append(f"{link[side][:8]}\nsimilarity {link['similarity']:.3f}")
    return plots.image_grid(
        images, titles, columns=4, title="Re-saved copies merged into one group (pairs)"
    )
