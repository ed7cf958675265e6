"""Which nearest-neighbour structure for the thumbnail near-duplicate search?

Answered: an inverted-file index with a range search (faiss IndexIVFFlat), as used by
`core/data/neighbours.py`. Figures in docs/results.md ("Scaling the data layer").

    .venv/bin/python experiments/neighbour_search.py [--size 100000]

On the synthetic thumbnails of `benchmarks/scale.py`, all three candidates search the same
PCA projection (`neighbours.DIMS` dimensions) and every candidate pair is verified with the
exact cosine, so they differ only in which true pairs they miss and in time:
- IVF range search (the pipeline's): every neighbour within the threshold's radius;
- HNSW (faiss IndexHNSWFlat, M=32) k-nearest with k=8 and k=32: a threshold criterion asked
  as "k nearest" misses pairs in groups larger than k, and costs more with k.
hnswlib is the same algorithm as faiss's HNSW; on this machine's package index it ships only
as a source archive, so faiss's implementation stands for it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from scale import THRESHOLD, _chunk  # noqa: E402

from brain_pipeline.core.data.neighbours import (  # noqa: E402
    DIMS,
    NeighbourIndex,
    _principal_components,
    exact_pairs,
    pair_cosines,
    unit_vectors,
)


def _ids(pairs: np.ndarray) -> set[int]:
    pairs = np.sort(pairs, axis=1)
    return set((pairs[:, 0].astype(np.int64) * 10_000_000 + pairs[:, 1]).tolist())


def hnsw_pairs(thumbnails: np.ndarray, k: int) -> np.ndarray:
    vectors = unit_vectors(thumbnails)
    projected = np.ascontiguousarray(vectors @ _principal_components(vectors[:50_000], DIMS).T)
    index = faiss.IndexHNSWFlat(DIMS, 32)
    index.hnsw.efSearch = max(64, 2 * k)
    index.add(projected)
    _, found = index.search(projected, k + 1)
    first = np.repeat(np.arange(len(found)), found.shape[1])
    pairs = np.stack([first, found.ravel()], axis=1)
    pairs = pairs[(pairs[:, 1] >= 0) & (pairs[:, 0] != pairs[:, 1])]
    return pairs[pair_cosines(thumbnails, pairs) >= THRESHOLD]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    args = parser.parse_args()
    thumbnails = np.concatenate(
        [_chunk(start, min(50_000, args.size - start)) for start in range(0, args.size, 50_000)]
    )
    started = time.perf_counter()
    reference = _ids(exact_pairs(thumbnails, THRESHOLD))
    results = {"exact": {"seconds": round(time.perf_counter() - started, 1), "recall": 1.0}}
    keys = np.array([f"{i:08d}" for i in range(len(thumbnails))])
    candidates = {
        "faiss_ivf_range": lambda: NeighbourIndex.build(thumbnails, keys, THRESHOLD).pairs,
        "faiss_hnsw_k8": lambda: hnsw_pairs(thumbnails, 8),
        "faiss_hnsw_k32": lambda: hnsw_pairs(thumbnails, 32),
    }
    for name, search in candidates.items():
        started = time.perf_counter()
        found = _ids(search())
        results[name] = {
            "seconds": round(time.perf_counter() - started, 1),
            "recall": round(len(found & reference) / len(reference), 4),
        }
        print(name, json.dumps(results[name]), flush=True)
    print(json.dumps({"size": args.size, "pairs": len(reference), **results}))


if __name__ == "__main__":
    main()
