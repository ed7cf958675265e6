"""Does near-duplicate grouping scale to a million images on two cores?

    .venv/bin/python benchmarks/scale.py [--sizes 20000 100000 1000000] [--exact-up-to 100000]
        [--work-dir DIR]

Synthetic 32x32 thumbnail sets (`synthetic_thumbnails`): brain-like frames (a shared head
outline, each image its own smooth texture) where about a third of the images belong to
clusters of near copies: chains of slices, each a small smooth change of the previous one, so
some pairs fall just above and some just below the 0.99 cosine threshold. Each size runs in
its own process (so its peak memory is its own) and reports
- the time (median of 3 builds) and peak resident memory to build the neighbour index and
  label the groups (`core/data/neighbours.py`), and the fitted growth exponent between the
  two largest sizes;
- recall of the duplicate pairs against exact all-pairs search, where that is affordable;
- the time to add 1,000 new images to the largest set: load the saved index, insert, search,
  re-label, save;
- the peak memory of combining the largest set's four dataset manifests into one (pyarrow
  record batches) and of reading its thumbnails back into one matrix, each in its own process
  (`core/data/manifest_io.py`).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from brain_pipeline.core import artifact_names
from brain_pipeline.core.classes import TUMOR
from brain_pipeline.core.data import manifest_io
from brain_pipeline.core.data.neighbours import NeighbourIndex, exact_pairs

THRESHOLD = 0.99
REPEATS = 3  # timings per size: one slow run on a shared machine must not set the exponent
CHUNK = 50_000  # images generated at once


def _head_outline() -> np.ndarray:
    y, x = np.mgrid[-1:1:32j, -1:1:32j]
    return ((x / 0.8) ** 2 + (y / 0.9) ** 2 <= 1).astype(np.float32)


def _smooth(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 1024) smooth random textures: 8x8 noise, upsampled and blurred."""
    coarse = rng.normal(size=(count, 8, 8)).astype(np.float32)
    fine = np.kron(coarse, np.ones((4, 4), np.float32))
    fine = (fine + np.roll(fine, 1, 1) + np.roll(fine, 1, 2) + np.roll(fine, (1, 1), (1, 2))) / 4
    return fine.reshape(count, -1)


def _chunk(seed: int, count: int) -> np.ndarray:
    """`count` thumbnails: unique images, then clusters (chains of near copies) of 2-32."""
    rng = np.random.default_rng(seed)
    head = _head_outline().ravel()
    images = 90 * head + 35 * _smooth(rng, count) * head
    start = int(count * 0.65)
    while start < count:
        size = int(rng.choice([2, 3, 4, 8, 32], p=[0.4, 0.25, 0.15, 0.15, 0.05]))
        size = min(size, count - start)
        step = rng.uniform(0.02, 0.22)  # relative size of each slice-to-slice change
        base = images[start]
        for offset in range(1, size):
            change = _smooth(rng, 1)[0] * head
            scale = step * np.linalg.norm(base - base.mean()) / np.linalg.norm(change)
            base = base + scale * change
            images[start + offset] = base
        start += size
    return np.clip(images + rng.normal(0, 0.5, images.shape), 0, 255).astype(np.uint8)


def synthetic_thumbnails(count: int, path: Path, seed: int = 0) -> Path:
    """Write `count` thumbnails to `path` (.npy), CHUNK at a time."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(count, 1024))
    for start in range(0, count, CHUNK):
        size = min(CHUNK, count - start)
        out[start : start + size] = _chunk(seed * 1_000_003 + start, size)
    out.flush()
    return path


def _keys(start: int, count: int) -> np.ndarray:
    return np.array([f"{i:016x}" for i in range(start, start + count)], dtype="S16")


def _peak_rss_gb() -> float:
    """This process's peak resident memory (VmHWM). Not getrusage's ru_maxrss: across
    fork and exec that keeps the parent's peak, which holds the generated set."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


# --------------------------------------------------------------------------- child processes


def child_group(data: Path, out: Path) -> dict:
    """Build and label `REPEATS` times (a fresh index each time); the median time counts."""
    thumbnails = np.load(data, mmap_mode="r")
    times, index = [], None
    for _ in range(REPEATS):
        del index  # one index at a time: the peak is one build's
        started = time.perf_counter()
        index = NeighbourIndex.build(thumbnails, _keys(0, len(thumbnails)), THRESHOLD)
        labels = index.labels(index.keys)
        times.append(time.perf_counter() - started)
    index.save(out)
    np.save(out / "found_pairs.npy", index.pairs)
    return {
        "seconds": float(np.median(times)),
        "runs_seconds": [round(t, 2) for t in times],
        "peak_rss_gb": _peak_rss_gb(),
        "pairs": len(index.pairs),
        "groups": len(np.unique(labels)),
    }


def child_exact(data: Path, found: Path) -> dict:
    started = time.perf_counter()
    reference = exact_pairs(np.load(data), THRESHOLD)
    seconds = time.perf_counter() - started
    approximate = np.load(found)
    both = np.intersect1d(_pair_ids(reference), _pair_ids(approximate))
    extra = np.setdiff1d(_pair_ids(approximate), _pair_ids(reference))
    return {
        "exact_seconds": seconds,
        "exact_pairs": len(reference),
        "recall": len(both) / max(len(reference), 1),
        "pairs_not_in_exact": len(extra),
    }


def _pair_ids(pairs: np.ndarray) -> np.ndarray:
    return pairs[:, 0].astype(np.int64) * 10_000_000 + pairs[:, 1]


def child_add(folder: Path, count: int) -> dict:
    new = _chunk(987_654, count)
    started = time.perf_counter()
    index = NeighbourIndex.load(folder)
    before = index.labels(index.keys[:1000])
    added = index.add(new, _keys(10**9, count))
    labels = index.labels(index.keys)
    index.save(folder.with_name(folder.name + "_grown"))
    seconds = time.perf_counter() - started
    return {
        "add_seconds": seconds,
        "add_new_pairs": added,
        "add_peak_rss_gb": _peak_rss_gb(),
        "untouched_labels_kept": bool((labels[:1000] == before).all()),
    }


def _write_part(thumbnails: np.ndarray, start: int, path: Path) -> Path:
    """A manifest part as the manifest assets write it (the columns the index reads)."""
    schema = pa.schema(
        [
            ("dataset", pa.string()),
            ("sha256", pa.string()),
            ("status", pa.string()),
            ("target_class", pa.string()),
            ("thumbnail", pa.binary()),
        ]
    )
    with pq.ParquetWriter(path, schema) as writer:
        for offset in range(0, len(thumbnails), CHUNK):
            rows = np.asarray(thumbnails[offset : offset + CHUNK])
            keys = [f"{start + offset + i:064x}" for i in range(len(rows))]
            writer.write_table(
                pa.table(
                    [
                        [path.stem] * len(rows),
                        keys,
                        ["ok"] * len(rows),
                        [TUMOR] * len(rows),
                        _binary(rows),
                    ],
                    schema=schema,
                )
            )
    return path


def _binary(rows: np.ndarray) -> pa.Array:
    """(n, 1024) uint8 rows as a binary column, without a Python object per row."""
    offsets = np.arange(0, (len(rows) + 1) * rows.shape[1], rows.shape[1], dtype=np.int32)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(rows))]
    return pa.Array.from_buffers(pa.binary(), len(rows), buffers)


def child_parts(data: Path, folder: Path) -> dict:
    """Four dataset parts, as the manifest assets write them (not measured)."""
    thumbnails = np.load(data, mmap_mode="r")
    quarter = -(-len(thumbnails) // 4)
    for start in range(0, len(thumbnails), quarter):
        part = folder / f"part{start // quarter}.parquet"
        _write_part(thumbnails[start : start + quarter], start, part)
    return {"parts": -(-len(thumbnails) // quarter)}


def child_combine(folder: Path) -> dict:
    """The parts streamed into one manifest (what image_manifest does)."""
    started = time.perf_counter()
    rows = manifest_io.combine(
        sorted(folder.glob("part*.parquet")), folder / artifact_names.MANIFEST
    )
    return {
        "manifest_rows": rows,
        "combine_seconds": time.perf_counter() - started,
        "combine_peak_rss_gb": _peak_rss_gb(),
    }


def child_read(folder: Path, data: Path) -> dict:
    """Every thumbnail of the manifest into one matrix (what balanced_index does)."""
    started = time.perf_counter()
    matrix, _ = manifest_io.read_thumbnails(folder / artifact_names.MANIFEST)
    result = {
        "read_thumbnails_seconds": time.perf_counter() - started,
        "read_peak_rss_gb": _peak_rss_gb(),  # before the check below maps the source
    }
    identical = all(
        np.array_equal(matrix[s : s + CHUNK], np.load(data, mmap_mode="r")[s : s + CHUNK])
        for s in range(0, len(matrix), CHUNK)
    )
    return result | {"read_back_identical": identical}


CHILDREN = {
    "group": child_group,
    "exact": child_exact,
    "parts": child_parts,
    "combine": child_combine,
    "read": child_read,
}


def _run_child(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000, 1_000_000])
    parser.add_argument("--exact-up-to", type=int, default=100_000)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, *paths = args.child
        if name == "add":
            print(json.dumps(child_add(Path(paths[0]), int(paths[1]))))
        else:
            print(json.dumps(CHILDREN[name](*map(Path, paths))))
        return
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        print(json.dumps(run(sorted(args.sizes), args.exact_up_to, Path(work))))


def run(sizes: list[int], exact_up_to: int, work: Path) -> dict:
    by_size = {}
    for size in sizes:
        data = synthetic_thumbnails(size, work / f"thumbnails_{size}.npy")
        result = _run_child("group", str(data), str(work / f"index_{size}"))
        if size <= exact_up_to:
            found = work / f"index_{size}" / "found_pairs.npy"
            result |= _run_child("exact", str(data), str(found))
        by_size[size] = result
        print(f"{size:>9,} images: {json.dumps(result)}", flush=True)
    largest, second = sizes[-1], sizes[-2] if len(sizes) > 1 else None
    added = _run_child("add", str(work / f"index_{largest}"), "1000")
    print(f"add 1,000 to {largest:,}: {json.dumps(added)}", flush=True)
    data = work / f"thumbnails_{largest}.npy"
    _run_child("parts", str(data), str(work))
    io = _run_child("combine", str(work)) | _run_child("read", str(work), str(data))
    print(f"manifest of {largest:,}: {json.dumps(io)}", flush=True)
    seconds = {str(s): round(r["seconds"], 2) for s, r in by_size.items()}
    exponent = (
        math.log(by_size[largest]["seconds"] / by_size[second]["seconds"])
        / math.log(largest / second)
        if second
        else None
    )
    return {
        "seconds_by_size": seconds,
        "peak_rss_gb_by_size": {str(s): round(r["peak_rss_gb"], 3) for s, r in by_size.items()},
        "growth_exponent": round(exponent, 3) if exponent else None,
        "recall_at_100k": by_size.get(100_000, {}).get("recall"),
        "add1000_seconds": round(added["add_seconds"], 2),
        "recall_by_size": {str(s): r.get("recall") for s, r in by_size.items()},
        "pairs_by_size": {str(s): r["pairs"] for s, r in by_size.items()},
        "groups_by_size": {str(s): r["groups"] for s, r in by_size.items()},
        "add1000_untouched_labels_kept": added["untouched_labels_kept"],
        "manifest_combine_peak_rss_gb": round(io["combine_peak_rss_gb"], 3),
        "manifest_read_thumbnails_peak_rss_gb": round(io["read_peak_rss_gb"], 3),
        "manifest_read_back_identical": io["read_back_identical"],
    }


if __name__ == "__main__":
    main()
