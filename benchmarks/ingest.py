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

from brain_pipeline.core.data.dedup import build_balanced_index
from brain_pipeline.core.data.manifest import build_manifest, manifest_summary
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
    index, conflicts, report, _ = build_balanced_index(cold, seed=0)
    index_s = time.perf_counter() - started
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
            }
        )
    )


if __name__ == "__main__":
    main()
