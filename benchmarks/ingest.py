"""Manifest throughput on real data: cold scan, unchanged re-scan, re-scan after +100 files.

    .venv/bin/python benchmarks/ingest.py --data-dir /path/to/datasets

The raw root is never written to: the benchmark works in a scratch root whose dataset folders
are symlinks to the real ones, and "adds" 100 files as a new dataset folder holding copies of
real images (re-encoded with a changed pixel so their hashes are new). Besides the timings it
prints what ingestion found (statuses, rejects by reason, exact and near-duplicate groups,
per-class counts after dedup and balancing). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from brain_pipeline.core.data.dedup import (
    DEFAULT_NEAR_DUPLICATE_COSINE,
    build_balanced_index,
    collapse_exact_duplicates,
    thumbnail_neighbours,
    thumbnails_from_column,
)
from brain_pipeline.core.data.manifest import build_manifest, manifest_summary
from brain_pipeline.core.data.neighbours import NeighbourIndex, components, exact_pairs
from brain_pipeline.core.data.sources import load_raw_data_config
from brain_pipeline.core.data.splits import assign_splits, leakage_report


def _add_files(folder: Path, sources: list[Path]) -> None:
    folder.mkdir(parents=True)
    for number, source in enumerate(sources):
        with Image.open(source) as image:
            array = np.array(image.convert("L"))
        array[0, 0] = (int(array[0, 0]) + 1) % 256  # new content, same look
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        (folder / f"added_{number}.png").write_bytes(buffer.getvalue())


def approximate_versus_exact(manifest, grown) -> dict:
    """The neighbour index's thumbnail pairs and groups against exact all-pairs search on
    every unique content, and the time to bring it up to date after the +100 files."""
    unique, _ = collapse_exact_duplicates(manifest)
    keys = unique["sha256"].to_numpy().astype(str)
    thumbnails = thumbnails_from_column(unique)(keys)
    started = time.perf_counter()
    index = NeighbourIndex.build(thumbnails, keys, DEFAULT_NEAR_DUPLICATE_COSINE)
    approximate_s = time.perf_counter() - started
    started = time.perf_counter()
    exact = exact_pairs(thumbnails, DEFAULT_NEAR_DUPLICATE_COSINE)
    exact_s = time.perf_counter() - started
    found = {tuple(sorted(p)) for p in index.key_pairs().astype(str).tolist()}
    reference = {tuple(sorted(p)) for p in keys[exact].tolist()}
    labels = index.labels(keys)
    exact_labels = components(len(keys), exact)
    grown_unique, _ = collapse_exact_duplicates(grown)
    started = time.perf_counter()
    _, update = thumbnail_neighbours(
        grown_unique["sha256"].to_numpy().astype(str),
        thumbnails_from_column(grown_unique),
        DEFAULT_NEAR_DUPLICATE_COSINE,
        index,
    )
    return {
        "thumbnail_pairs_exact": len(reference),
        "thumbnail_pairs_recall": len(found & reference) / max(len(reference), 1),
        "thumbnail_pairs_not_in_exact": len(found - reference),
        "thumbnail_groups_identical_to_exact": len(set(zip(labels, exact_labels, strict=True)))
        == len(set(labels))
        == len(set(exact_labels)),
        "neighbour_index_build_s": round(approximate_s, 2),
        "exact_search_s": round(exact_s, 2),
        "neighbour_index_add100_s": round(time.perf_counter() - started, 2),
        "neighbour_index_add100": update,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    real = load_raw_data_config(args.data_dir.resolve())
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "raw"
        root.mkdir()
        for spec in real.datasets:
            os.symlink(spec.root, root / spec.root.name)
        datasets = load_raw_data_config(root).datasets

        started = time.perf_counter()
        cold, decoded = build_manifest(datasets)
        cold_s = time.perf_counter() - started
        print(f"cold scan: {len(cold)} files, {decoded} decoded, {cold_s:.1f} s")

        started = time.perf_counter()
        unchanged, decoded_again = build_manifest(datasets, previous=cold)
        unchanged_s = time.perf_counter() - started
        print(f"unchanged re-scan: {decoded_again} decoded, {unchanged_s:.2f} s")

        ok = cold[cold["status"] == "ok"]
        sources = [
            next(s.root for s in datasets if s.name == d) / p
            for d, p in zip(ok["dataset"][:100], ok["path"][:100], strict=True)
        ]
        _add_files(root / "incoming" / "yes", sources)
        datasets = load_raw_data_config(root).datasets
        started = time.perf_counter()
        grown, decoded_new = build_manifest(datasets, previous=unchanged)
        add_s = time.perf_counter() - started
        print(f"+100 files re-scan: {decoded_new} decoded, {add_s:.2f} s")

    started = time.perf_counter()
    index, conflicts, report, _, *_ = build_balanced_index(cold)
    index_s = time.perf_counter() - started
    versus_exact = approximate_versus_exact(cold, grown)
    print("thumbnail pairs, approximate vs exact:", json.dumps(versus_exact))
    table = assign_splits(index, salt="brain_pipeline")
    summary = manifest_summary(cold)
    sizes = {int(k): v for k, v in report.group_size_distribution.items()}
    print(json.dumps(summary, indent=1))
    print(f"index (dedup + near-duplicate grouping + balancing): {index_s:.1f} s")
    print(json.dumps(report.__dict__, indent=1, default=str))
    print("split x class:", table.groupby(["split", "target_class"]).size().to_dict())
    print(
        json.dumps(
            {
                "n_files": int(len(cold)),
                "cold_images_per_s": round(decoded / cold_s, 1),
                "unchanged_rerun_s": round(unchanged_s, 3),
                "add100_rerun_s": round(add_s, 3),
                "add100_decoded": decoded_new,
                "n_rejected": summary["n_rejected"],
                "n_unique_contents": report.n_unique_contents,
                "n_exact_duplicate_files": report.n_exact_duplicate_files,
                "n_label_conflicts": report.n_conflicting_contents,
                "n_near_duplicate_groups": report.n_near_duplicate_groups,
                "largest_group_size": report.largest_group_size,
                "groups_of_size_32": sizes.get(32, 0),
                "counts_after_balancing": report.counts_after_balancing,
                "split_leakage": leakage_report(table),
                "index_build_s": round(index_s, 1),
                **versus_exact,
            }
        )
    )


if __name__ == "__main__":
    main()
