"""Which image representation tells "the same scan, re-saved" from "another scan"?

    .venv/bin/python benchmarks/duplicates.py --data-dir /path/to/datasets [--originals 300]

A labelled benchmark for the near-duplicate definition. Recall: altered copies made from real
images (a monotone intensity change, a crop or zoom of up to 20%, a resize, a JPEG re-encode,
and a combination) must reach the cosine threshold with their original. Precision: the
registered, skull-stripped Alzheimer slices of different subjects must not merge, so the
number of connected components among them (about 200 subjects of about 32 slices under the
current definition) must stay; among the tumour images, the share of random pairs from
different current groups that reach the threshold is reported (some of them are re-saved
copies, so it is an upper bound on false merges). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from brain_pipeline.core.data.dedup import near_duplicate_groups
from brain_pipeline.core.data.manifest import THUMBNAIL_SIDE, build_manifest, to_grayscale
from brain_pipeline.core.data.sources import load_raw_data_config
from brain_pipeline.core.imaging.preprocessing import filesystem_path, head_bounding_box, load_image

THRESHOLDS = (0.90, 0.93, 0.95, 0.97, 0.99)


# ----------------------------------------------------------------------------- alterations


def _gamma(image: Image.Image, gamma: float) -> Image.Image:
    return image.point(lambda v: round(255 * (v / 255) ** gamma))


def _window(image: Image.Image, low: int, high: int) -> Image.Image:
    return image.point(lambda v: round(255 * min(max((v - low) / (high - low), 0.0), 1.0)))


def _crop(image: Image.Image, fraction: float, rng: np.random.Generator) -> Image.Image:
    width, height = image.size
    dx, dy = int(width * fraction), int(height * fraction)
    left, top = int(rng.integers(0, dx + 1)), int(rng.integers(0, dy + 1))
    return image.crop((left, top, left + width - dx, top + height - dy)).resize(image.size)


def _zoom_out(image: Image.Image, fraction: float) -> Image.Image:
    width, height = image.size
    canvas = Image.new("L", (int(width * (1 + fraction)), int(height * (1 + fraction))))
    canvas.paste(image, ((canvas.width - width) // 2, (canvas.height - height) // 2))
    return canvas


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


def alterations(rng: np.random.Generator) -> dict[str, Callable[[Image.Image], Image.Image]]:
    return {
        "gamma_0.7": lambda im: _gamma(im, 0.7),
        "gamma_1.4": lambda im: _gamma(im, 1.4),
        "window_20_220": lambda im: _window(im, 20, 220),
        "crop_10": lambda im: _crop(im, 0.10, rng),
        "crop_20": lambda im: _crop(im, 0.20, rng),
        "zoom_out_15": lambda im: _zoom_out(im, 0.15),
        "resize_0.5": lambda im: im.resize((im.width // 2, im.height // 2)),
        "resize_1.5": lambda im: im.resize((im.width * 3 // 2, im.height * 3 // 2)),
        "jpeg_40": lambda im: _jpeg(im, 40),
        "combined": lambda im: _jpeg(_crop(_gamma(im, 1.3), 0.15, rng), 60),
    }


# ----------------------------------------------------------------------------- representations


def _unit(vector: np.ndarray) -> np.ndarray:
    centred = vector - vector.mean()
    norm = np.linalg.norm(centred)
    return centred / norm if norm > 0 else centred


def raw_thumbnail(gray: Image.Image) -> np.ndarray:
    """The current definition: the whole frame at 32x32, mean-centred."""
    small = gray.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    return _unit(np.asarray(small, dtype=np.float32).ravel())


def _head(gray: Image.Image) -> Image.Image:
    top, bottom, left, right = head_bounding_box(np.asarray(gray, dtype=np.float32) / 255.0)
    return gray.crop((left, top, right, bottom))


def head_rank_thumbnail(gray: Image.Image) -> np.ndarray:
    """The head's bounding box at 32x32, intensities replaced by their ranks (any monotone
    intensity change leaves the ranks as they were)."""
    small = _head(gray).resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    values = np.asarray(small, dtype=np.float32).ravel()
    ranks = np.argsort(np.argsort(values, kind="stable"), kind="stable").astype(np.float32)
    return _unit(ranks)


def head_raw_thumbnail(gray: Image.Image) -> np.ndarray:
    """The head's bounding box at 32x32, raw intensities (crop-invariant only)."""
    small = _head(gray).resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    return _unit(np.asarray(small, dtype=np.float32).ravel())


REPRESENTATIONS = {
    "raw_thumbnail": raw_thumbnail,
    "head_raw": head_raw_thumbnail,
    "head_rank": head_rank_thumbnail,
}


# ----------------------------------------------------------------------------- measurements


def _gray(path: Path) -> Image.Image:
    return to_grayscale(load_image(path))


def recall_table(originals: list[Image.Image], seed: int) -> pd.DataFrame:
    """Cosine of every (original, altered copy) pair, per representation and alteration."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, alter in alterations(rng).items():
        copies = [alter(image) for image in originals]
        for rep, embed in REPRESENTATIONS.items():
            cosines = [float(embed(a) @ embed(b)) for a, b in zip(originals, copies, strict=True)]
            rows.append({"alteration": name, "representation": rep, "cosines": cosines})
    return pd.DataFrame(rows)


def group_counts(images: list[Image.Image]) -> dict[str, dict[float, tuple[int, int]]]:
    """Per representation and threshold: (number of groups, largest group)."""
    counts: dict[str, dict[float, tuple[int, int]]] = {}
    for rep, embed in REPRESENTATIONS.items():
        vectors = np.stack([embed(image) for image in images]).astype(np.float32)
        counts[rep] = {}
        for threshold in THRESHOLDS:
            labels = near_duplicate_groups(vectors, threshold)
            sizes = np.bincount(np.unique(labels, return_inverse=True)[1])
            counts[rep][threshold] = (int(len(sizes)), int(sizes.max()))
    return counts


def cross_group_rates(
    images: list[Image.Image], groups: np.ndarray, pairs: int, seed: int
) -> dict[str, dict[float, float]]:
    """Share of random pairs from different current groups that reach each threshold."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(images), pairs), rng.integers(0, len(images), pairs)
    keep = groups[a] != groups[b]
    a, b = a[keep], b[keep]
    rates: dict[str, dict[float, float]] = {}
    for rep, embed in REPRESENTATIONS.items():
        vectors = np.stack([embed(image) for image in images]).astype(np.float32)
        cosines = np.einsum("ij,ij->i", vectors[a], vectors[b])
        rates[rep] = {t: float((cosines >= t).mean()) for t in THRESHOLDS}
    return rates


def _unique_images(data_dir: Path) -> pd.DataFrame:
    """One readable row per content, with its current near-duplicate group."""
    from brain_pipeline.core.data.dedup import assign_group_ids, collapse_exact_duplicates

    raw = load_raw_data_config(data_dir)
    manifest, _ = build_manifest(raw.datasets)
    unique, _ = collapse_exact_duplicates(manifest)
    grouped = assign_group_ids(unique, 0.99)
    grouped["file"] = [
        filesystem_path(raw.roots[d], p)
        for d, p in zip(grouped["dataset"], grouped["path"], strict=True)
    ]
    return grouped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--originals", type=int, default=300, help="tumour-set originals")
    parser.add_argument("--pairs", type=int, default=20000, help="random tumour-image pairs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    unique = _unique_images(args.data_dir)
    alzheimer = unique[
        unique["source_label"].isin(
            ["NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented"]
        )
    ]
    tumour_sets = unique.drop(alzheimer.index)
    sample = tumour_sets.sample(n=min(args.originals, len(tumour_sets)), random_state=args.seed)
    recall = recall_table([_gray(f) for f in sample["file"]], args.seed)
    alzheimer_images = [_gray(f) for f in alzheimer["file"]]
    groups = group_counts(alzheimer_images)
    tumour_images = [_gray(f) for f in tumour_sets["file"]]
    rates = cross_group_rates(
        tumour_images, tumour_sets["group_id"].to_numpy(), args.pairs, args.seed
    )
    _report(recall, groups, rates, len(sample), len(alzheimer), time.perf_counter() - started)


def _report(recall, groups, rates, n_originals, n_alzheimer, seconds) -> None:
    summary: dict = {"originals": n_originals, "alzheimer_images": n_alzheimer}
    for rep in REPRESENTATIONS:
        print(f"\n{rep}")
        print("  recall of altered copies (cosine >= t): " + "  ".join(f"{t}" for t in THRESHOLDS))
        rows = recall[recall["representation"] == rep]
        every = np.concatenate(rows["cosines"].to_list())
        per_threshold = {}
        for _, row in rows.iterrows():
            values = np.array(row["cosines"])
            shares = "  ".join(f"{(values >= t).mean():.3f}" for t in THRESHOLDS)
            print(f"    {row['alteration']:<14} {shares}")
        for t in THRESHOLDS:
            per_threshold[t] = {
                "recall": float((every >= t).mean()),
                "alzheimer_groups": groups[rep][t][0],
                "alzheimer_largest_group": groups[rep][t][1],
                "tumour_cross_group_pair_rate": rates[rep][t],
            }
            print(
                f"  t={t}: recall {per_threshold[t]['recall']:.3f}, Alzheimer groups "
                f"{groups[rep][t][0]} (largest {groups[rep][t][1]}), tumour cross-group "
                f"pairs {rates[rep][t]:.4f}"
            )
        summary[rep] = {str(t): v for t, v in per_threshold.items()}
    summary["seconds"] = round(seconds, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
