"""Does the duplicate definition tell "the same scan, re-saved" from "another scan"?

    .venv/bin/python benchmarks/duplicates.py --data-dir /path/to/datasets [--originals 200]
        [--figure merged_pairs.png]

A labelled benchmark of the pipeline's own near-duplicate grouping (thumbnail cosine, then
re-saved copies: `core/data/resaved.py`), run through the same code on every unique image of
the data plus altered copies:
- recall: altered copies of real tumour-set images (each alteration of
  `core/data/alterations.py`: contrast, gamma, window, crop, zoom-out, resize, JPEG, and a
  combination) must end in their original's group;
- precision: the registered, skull-stripped Alzheimer slices of different subjects must stay
  apart (about 200 subjects of about 32 slices; the thumbnail criterion alone finds 200 groups
  of exactly 32), and the tumour-set groups merged by the re-saved criterion are counted (and
  drawn, with --figure, for inspection by eye).
Several acceptance rules are scored on one candidate search. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from brain_pipeline.core import plots
from brain_pipeline.core.data import resaved
from brain_pipeline.core.data.alterations import alterations
from brain_pipeline.core.data.dedup import (
    DEFAULT_NEAR_DUPLICATE_COSINE,
    collapse_exact_duplicates,
    features_of,
    near_duplicate_groups,
    thumbnail_matrix,
)
from brain_pipeline.core.data.manifest import build_manifest, grayscale_thumbnail
from brain_pipeline.core.data.sources import load_raw_data_config
from brain_pipeline.core.imaging.grayscale import to_grayscale
from brain_pipeline.core.imaging.preprocessing import filesystem_path, load_image

ALZHEIMER_LABELS = ("NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented")
RULES = [resaved.Acceptance(s, i) for s in (0.88, 0.90, 0.92) for i in (6, 10, 15)]


def _unique_images(data_dir: Path) -> pd.DataFrame:
    raw = load_raw_data_config(data_dir)
    manifest, _ = build_manifest(raw.datasets)
    unique, _ = collapse_exact_duplicates(manifest)
    unique["file"] = [
        filesystem_path(raw.roots[d], p)
        for d, p in zip(unique["dataset"], unique["path"], strict=True)
    ]
    return unique.reset_index(drop=True)


def _altered_copies(unique: pd.DataFrame, originals: int, seed: int) -> pd.DataFrame:
    """One row per altered copy: its original's position, the alteration, features."""
    tumour = unique[~unique["source_label"].isin(ALZHEIMER_LABELS)]
    sample = tumour.sample(n=min(originals, len(tumour)), random_state=seed)
    images = {i: to_grayscale(load_image(f)) for i, f in sample["file"].items()}
    rows = []
    for name, alter in alterations(np.random.default_rng(seed)).items():
        for position, image in images.items():
            copy = alter(image)
            keypoints, detail = resaved.local_features(copy).to_bytes()
            thumbnail = grayscale_thumbnail(copy)
            rows.append((position, name, thumbnail, keypoints, detail))
    return pd.DataFrame(
        rows, columns=["original", "alteration", "thumbnail", "keypoints", "detail"]
    )


def _score(rule, unique, copies, features, thumb_groups, candidates) -> dict:
    started = time.perf_counter()
    merged, links = resaved.link_resaved_copies(features, thumb_groups, rule, candidates)
    seconds = time.perf_counter() - started
    n_unique = len(unique)
    found = merged[n_unique:] == merged[copies["original"].to_numpy()]
    recall = pd.Series(found).groupby(copies["alteration"].to_numpy()).mean()
    alzheimer = unique["source_label"].isin(ALZHEIMER_LABELS).to_numpy()
    sizes = pd.Series(merged[:n_unique][alzheimer]).value_counts()
    tumour = ~alzheimer
    return {
        "similarity": rule.similarity,
        "min_inliers": rule.min_inliers,
        "recall": round(float(found.mean()), 4),
        "weakest": f"{recall.idxmin()} {recall.min():.3f}",
        "alzheimer_groups": int(len(sizes)),
        "alzheimer_largest_group": int(sizes.max()),
        "tumour_groups_before": int(len(np.unique(thumb_groups[:n_unique][tumour]))),
        "tumour_groups_after": int(len(np.unique(merged[:n_unique][tumour]))),
        "verify_seconds": round(seconds, 1),
        "_links": links,
    }


def _figure(path: Path, links: pd.DataFrame, details: pd.Series, n_unique: int, seed: int):
    """Random merged pairs between existing images, side by side, for inspection by eye."""
    links = links[(links["first"] < n_unique) & (links["second"] < n_unique)]
    shown = links.sample(n=min(16, len(links)), random_state=seed)
    images, titles = [], []
    for _, link in shown.iterrows():
        for side in ("first", "second"):
            images.append(resaved.detail_pixels(details[link[side]]).astype(np.float32) / 255)
            titles.append(f"#{link[side]}  sim {link['similarity']:.3f}  inl {link['inliers']}")
    figure = plots.image_grid(images, titles, columns=4, title="Merged re-saved copies")
    figure.savefig(path, dpi=90)
    print(f"figure: {path}")


def _differences(links: pd.DataFrame, unique: pd.DataFrame, out: Path | None) -> dict:
    """The links between existing images (not the altered copies), by dataset pair and by
    whether they join two classes (a labelling conflict the thumbnail criterion missed)."""
    links = links[(links["first"] < len(unique)) & (links["second"] < len(unique))]
    # Positional rows: an image in several links repeats, so nothing may align by index.
    first = unique.loc[links["first"]].reset_index(drop=True)
    second = unique.loc[links["second"]].reset_index(drop=True)
    table = pd.DataFrame(
        {
            "first": first["dataset"].str.cat(first["path"], sep="/").to_numpy(),
            "second": second["dataset"].str.cat(second["path"], sep="/").to_numpy(),
            "classes": first["target_class"].str.cat(second["target_class"], sep=" | ").to_numpy(),
            "inliers": links["inliers"].to_numpy(),
            "similarity": links["similarity"].round(4).to_numpy(),
        }
    )
    if out:
        table.to_csv(out, index=False)
        print(f"links: {out}")
    pairs = [
        " + ".join(sorted({a, b})) for a, b in zip(first["dataset"], second["dataset"], strict=True)
    ]
    return {
        "links_between_existing_images": int(len(table)),
        "links_by_datasets": pd.Series(pairs).value_counts().to_dict(),
        "links_joining_two_classes": int(
            (first["target_class"].to_numpy() != second["target_class"].to_numpy()).sum()
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--originals", type=int, default=200, help="tumour-set originals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", type=Path, help="draw random merged pairs here (PNG)")
    parser.add_argument("--links", type=Path, help="write every merging link here (CSV)")
    args = parser.parse_args()
    Image.MAX_IMAGE_PIXELS = 50_000_000
    started = time.perf_counter()
    unique = _unique_images(args.data_dir)
    copies = _altered_copies(unique, args.originals, args.seed)
    everything = pd.concat([unique[copies.columns[2:]], copies[copies.columns[2:]]])
    prepared = time.perf_counter()
    thumb_groups = near_duplicate_groups(
        thumbnail_matrix(everything["thumbnail"]), DEFAULT_NEAR_DUPLICATE_COSINE
    )
    features = features_of(everything)
    candidates = resaved.candidate_pairs(features)
    searched = time.perf_counter()
    print(f"{len(unique)} unique images, {len(copies)} altered copies")
    print(f"candidate search: {len(candidates.votes)} pairs in {searched - prepared:.1f} s")
    results = [_score(r, unique, copies, features, thumb_groups, candidates) for r in RULES]
    table = pd.DataFrame(results).drop(columns="_links")
    print(table.to_string(index=False))
    default = next(
        r
        for r in results
        if r["similarity"] == resaved.Acceptance().similarity
        and r["min_inliers"] == resaved.Acceptance().min_inliers
    )
    if args.figure:
        _figure(
            args.figure,
            default["_links"],
            everything["detail"].reset_index(drop=True),
            len(unique),
            args.seed,
        )
    summary = {k: v for k, v in default.items() if k != "_links"}
    summary.update(_differences(default["_links"], unique, args.links))
    summary["candidate_pairs"] = int(len(candidates.votes))
    summary["search_seconds"] = round(searched - prepared, 1)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
