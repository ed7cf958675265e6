"""Near-duplicate thumbnails at scale: an approximate search that is verified exactly, and
grows by addition.

Two thumbnails are near duplicates when the cosine of their mean-centred vectors reaches the
threshold (0.99). Comparing every pair costs O(n^2): hours at a million images. Instead:

1. **Projection.** Each unit vector is projected on its top `dims` principal components
   (fitted once, on a sample). An orthonormal projection never lengthens a difference, so a
   pair with cosine >= t (squared distance <= 2(1 - t)) is at least as close after projection:
   a range search in the projected space loses no pair.
2. **Search** (faiss `IndexIVFFlat`): k-means cells of about `CELL_SIZE` images each; every
   image is looked up in its `nprobe` nearest cells within that radius. The only pairs missed
   are those split over cells farther apart than that (recall is measured by
   `benchmarks/scale.py`).
3. **Verification**: every candidate pair is kept only if the exact cosine of the full
   thumbnails (`pair_cosines`, float64) reaches the threshold, so no pair is ever invented;
   exact search decides with the same function.

Groups are the connected components of the verified pairs (scipy). The structure keeps its
thumbnails (memory-mapped once saved) and its pairs, so `add` searches only for the new images
and `remove` drops pairs without searching; the component of an untouched image, and so its
content-keyed group id, is unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from brain_pipeline.core import artifact_names

THUMBNAIL_PIXELS = 32 * 32
DIMS = 64  # projected dimensions: 32 let 5x more candidates through on real MRI slices
CELL_SIZE = 256  # images per k-means cell: keeps a lookup's cost flat as the index grows
NPROBE = 8  # cells searched per lookup: 16 took 1.5x as long at a million (docs/results.md)
SAMPLE = 50_000  # images the projection and the cells are fitted on
BATCH = 20_000  # rows projected, searched or verified at once (bounds the working memory)
_RADIUS_MARGIN = 1.001  # float32 rounding must not drop a pair at exactly the threshold
_FLOAT32_SLACK = 1e-4  # exact search: float32 candidates this far below the threshold
FORMAT_VERSION = 1


def unit_vectors(thumbnails: np.ndarray) -> np.ndarray:
    """(n, 1024) uint8 thumbnails -> float32 unit vectors after removing each one's mean."""
    matrix = np.asarray(thumbnails, dtype=np.float32)
    centred = matrix - matrix.mean(axis=1, keepdims=True, dtype=np.float32)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)


def pair_cosines(thumbnails: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Cosine of each pair's mean-centred thumbnails, in float64: the one function that
    decides, for exact and approximate search alike, so the two agree at the threshold."""
    out = np.empty(len(pairs), np.float64)
    for start in range(0, len(pairs), BATCH):
        chunk = pairs[start : start + BATCH]
        a, b = (_unit64(thumbnails[rows]) for rows in chunk.T)
        out[start : start + BATCH] = np.einsum("ij,ij->i", a, b)
    return out


def _unit64(thumbnails: np.ndarray) -> np.ndarray:
    centred = thumbnails.astype(np.float64) - thumbnails.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)


def exact_pairs(thumbnails: np.ndarray, threshold: float, block: int = 2048) -> np.ndarray:
    """Every pair (i < j) with cosine >= threshold, by comparing all pairs: the reference.
    float32 products find the pairs near the threshold; `pair_cosines` decides."""
    vectors = unit_vectors(thumbnails)
    found = []
    for start in range(0, len(vectors), block):
        near = vectors[start : start + block] @ vectors.T >= threshold - _FLOAT32_SLACK
        rows, cols = np.nonzero(near)
        keep = cols > rows + start
        found.append(np.stack([rows[keep] + start, cols[keep]], axis=1))
    pairs = _sorted_pairs(np.concatenate(found) if found else np.zeros((0, 2), np.int64))
    return pairs[pair_cosines(thumbnails, pairs) >= threshold]


def components(count: int, pairs: np.ndarray) -> np.ndarray:
    """Connected-component label of each of `count` nodes linked by `pairs`."""
    graph = coo_matrix(
        (np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(count, count)
    )
    return connected_components(graph, directed=False)[1]


def _sorted_pairs(pairs: np.ndarray) -> np.ndarray:
    pairs = np.sort(pairs.astype(np.int64), axis=1)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


@dataclass
class NeighbourIndex:
    """Thumbnails (row = position), their verified near-duplicate pairs, and the search
    structure. `keys` name the rows (content hashes); removed rows stay, marked not `alive`."""

    threshold: float
    keys: np.ndarray  # bytes ('S' dtype), one per row
    thumbnails: np.ndarray  # (n, 1024) uint8
    alive: np.ndarray  # bool per row
    pairs: np.ndarray  # (m, 2) int64 row positions, first < second, both alive
    projection: np.ndarray  # (DIMS, 1024) float32, orthonormal rows
    search: faiss.IndexIVFFlat
    nprobe: int = NPROBE

    # ------------------------------------------------------------------ building and growing
    @classmethod
    def build(
        cls,
        thumbnails: np.ndarray,
        keys: np.ndarray,
        threshold: float,
        *,
        nprobe: int = NPROBE,
        seed: int = 0,
    ) -> NeighbourIndex:
        """Fit the projection and the cells on a sample, add every row, find every pair."""
        count = len(thumbnails)
        rng = np.random.default_rng(seed)
        cells = max(1, count // CELL_SIZE)
        # faiss wants ~40 training points per cell
        sample = np.sort(rng.choice(count, min(count, max(SAMPLE, 40 * cells)), replace=False))
        vectors = unit_vectors(thumbnails[sample]) if count else np.zeros((0, THUMBNAIL_PIXELS))
        projection = _principal_components(vectors[:SAMPLE], DIMS)
        cells = int(min(cells, len(sample) // 39 or 1))
        search = faiss.IndexIVFFlat(faiss.IndexFlatL2(DIMS), DIMS, cells, faiss.METRIC_L2)
        search.cp.seed = seed
        search.train(np.ascontiguousarray(vectors @ projection.T) if count else _zeros(1))
        index = cls(
            threshold,
            np.zeros(0, dtype="S64"),
            np.zeros((0, THUMBNAIL_PIXELS), np.uint8),
            np.zeros(0, bool),
            np.zeros((0, 2), np.int64),
            projection,
            search,
            nprobe,
        )
        index.add(thumbnails, keys)
        return index

    def add(self, thumbnails: np.ndarray, keys: np.ndarray) -> int:
        """Insert rows and find their pairs (with old rows and among themselves); returns the
        number of new pairs. The pairs of existing rows are not searched again."""
        start = len(self.thumbnails)
        thumbnails = np.asarray(thumbnails, dtype=np.uint8).reshape(-1, THUMBNAIL_PIXELS)
        if not len(thumbnails):
            return 0
        # The first rows are taken as given (a memory map stays one): no second copy.
        self.thumbnails = np.concatenate([self.thumbnails, thumbnails]) if start else thumbnails
        self.keys = np.concatenate([self.keys, np.asarray(keys, dtype="S")])
        self.alive = np.concatenate([self.alive, np.ones(len(thumbnails), bool)])
        batches = _batches(np.arange(start, len(self.keys)))
        projected = [self._projected(rows) for rows in batches]  # (BATCH, DIMS): small
        for rows, vectors in zip(batches, projected, strict=True):
            self.search.add_with_ids(vectors, rows)
        found = [self._pairs_of(*batch) for batch in zip(batches, projected, strict=True)]
        new = _sorted_pairs(np.concatenate([np.zeros((0, 2), np.int64), *found]))
        self.pairs = _sorted_pairs(np.concatenate([self.pairs, new]))
        return len(new)

    def remove(self, keys: np.ndarray) -> int:
        """Drop rows by key (their pairs go with them); returns how many were removed."""
        rows = np.nonzero(np.isin(self.keys, np.asarray(keys, dtype="S")) & self.alive)[0]
        if len(rows):
            self.search.remove_ids(faiss.IDSelectorBatch(rows.astype(np.int64)))
            self.alive[rows] = False
            gone = ~self.alive
            self.pairs = self.pairs[~(gone[self.pairs[:, 0]] | gone[self.pairs[:, 1]])]
        return len(rows)

    def sync(self, keys: np.ndarray, thumbnail_of) -> dict[str, int]:
        """Make the live rows exactly `keys`: remove the others, add the missing ones
        (`thumbnail_of(missing_keys)` returns their thumbnails in that order)."""
        keys = np.asarray(keys, dtype="S")
        live = self.keys[self.alive]
        removed = self.remove(live[~np.isin(live, keys)])
        missing = keys[~np.isin(keys, live)]
        new_pairs = self.add(thumbnail_of(missing), missing) if len(missing) else 0
        return {"added": len(missing), "removed": removed, "new_pairs": new_pairs}

    # ------------------------------------------------------------------ reading the groups
    def labels(self, keys: np.ndarray) -> np.ndarray:
        """Component label of each of `keys` (all must be live rows)."""
        return components(len(self.keys), self.pairs)[self._rows(keys)]

    def thumbnails_of(self, keys: np.ndarray) -> np.ndarray:
        """The stored thumbnail of each of `keys` (all must be live rows)."""
        return np.asarray(self.thumbnails[self._rows(keys)])

    def _rows(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype="S")
        live = np.nonzero(self.alive)[0]
        order = np.argsort(self.keys[live])
        found = np.searchsorted(self.keys[live][order], keys).clip(0, max(len(live) - 1, 0))
        rows = live[order[found]] if len(live) else found
        if len(keys) and (not len(live) or (self.keys[rows] != keys).any()):
            raise KeyError("some keys are not in the neighbour index: sync it first")
        return rows

    def key_pairs(self) -> np.ndarray:
        """The verified pairs as (m, 2) keys."""
        return self.keys[self.pairs]

    # ------------------------------------------------------------------ internals
    def _projected(self, rows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(unit_vectors(self.thumbnails[rows]) @ self.projection.T)

    def _pairs_of(self, rows: np.ndarray, projected: np.ndarray) -> np.ndarray:
        """Verified pairs between `rows` (`projected`) and every indexed row."""
        self.search.nprobe = min(self.nprobe, self.search.nlist)
        radius = 2.0 * (1.0 - self.threshold) * _RADIUS_MARGIN
        limits, _, found = self.search.range_search(projected, radius)
        first = np.repeat(rows, np.diff(limits).astype(np.int64))
        candidates = np.stack([first, found], axis=1)
        candidates = _sorted_pairs(candidates[candidates[:, 0] != candidates[:, 1]])
        return candidates[pair_cosines(self.thumbnails, candidates) >= self.threshold]

    # ------------------------------------------------------------------ persistence
    def save(self, folder: Path) -> Path:
        """Write the structure to `folder` (thumbnails as .npy, so `load` can memory-map)."""
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "thumbnails.npy", self.thumbnails)
        np.save(folder / "keys.npy", self.keys)
        np.save(folder / "alive.npy", self.alive)
        np.save(folder / "pairs.npy", self.pairs)
        np.save(folder / "projection.npy", self.projection)
        faiss.write_index(self.search, str(folder / "search.faiss"))
        meta = {"format": FORMAT_VERSION, "threshold": self.threshold, "nprobe": self.nprobe}
        (folder / artifact_names.NEIGHBOURS).write_text(json.dumps(meta))
        return folder

    @classmethod
    def load(cls, folder: Path) -> NeighbourIndex:
        meta = json.loads((folder / artifact_names.NEIGHBOURS).read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{folder}: neighbour index format {meta.get('format')} is stale")
        return cls(
            float(meta["threshold"]),
            np.load(folder / "keys.npy"),
            np.load(folder / "thumbnails.npy", mmap_mode="r"),
            np.load(folder / "alive.npy"),
            np.load(folder / "pairs.npy"),
            np.load(folder / "projection.npy"),
            faiss.read_index(str(folder / "search.faiss")),
            int(meta["nprobe"]),
        )


def _principal_components(vectors: np.ndarray, dims: int) -> np.ndarray:
    """(dims, 1024) orthonormal rows: the sample's top principal directions (padded with
    further orthonormal directions when the sample has fewer)."""
    covariance = vectors.T.astype(np.float64) @ vectors.astype(np.float64)
    _, eigenvectors = np.linalg.eigh(covariance)  # ascending eigenvalues
    return np.ascontiguousarray(eigenvectors[:, ::-1][:, :dims].T, dtype=np.float32)


def _batches(rows: np.ndarray) -> list[np.ndarray]:
    return [rows[start : start + BATCH] for start in range(0, len(rows), BATCH)]


def _zeros(count: int) -> np.ndarray:
    return np.zeros((count, DIMS), np.float32)
