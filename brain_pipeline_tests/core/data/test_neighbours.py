"""The approximate neighbour index finds the pairs exact search finds, grows by addition
without disturbing untouched groups, and survives a save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brain_pipeline.core.data import neighbours
from brain_pipeline.core.data.neighbours import NeighbourIndex, exact_pairs

THRESHOLD = 0.99


def synthetic(count: int, seed: int) -> np.ndarray:
    """Smooth random frames; every fourth image gets a chain of 1-4 near copies, some just
    above and some just below the threshold."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(count, 8, 8))
    images = 120 + 35 * np.kron(coarse, np.ones((4, 4))).reshape(count, -1)
    for start in range(0, count - 5, 4):
        for offset in range(1, int(rng.integers(1, 5))):
            change = np.kron(rng.normal(size=(8, 8)), np.ones((4, 4))).ravel()
            step = rng.uniform(0.05, 0.2) * np.linalg.norm(images[start] - images[start].mean())
            images[start + offset] = images[start + offset - 1] + step * change / np.linalg.norm(
                change
            )
    return np.clip(images + rng.normal(0, 0.5, images.shape), 0, 255).astype(np.uint8)


def keys_of(start: int, count: int) -> np.ndarray:
    return np.array([f"{i:08d}" for i in range(start, start + count)])


def pair_set(index: NeighbourIndex) -> set[tuple[bytes, bytes]]:
    return {tuple(sorted(pair)) for pair in index.key_pairs().tolist()}


def exact_set(thumbnails: np.ndarray, keys: np.ndarray) -> set[tuple[bytes, bytes]]:
    found = exact_pairs(thumbnails, THRESHOLD)
    return {tuple(sorted(p)) for p in np.asarray(keys, dtype="S")[found].tolist()}


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return synthetic(3000, seed=1)


def test_finds_exactly_the_pairs_of_exact_search(images: np.ndarray) -> None:
    keys = keys_of(0, len(images))
    index = NeighbourIndex.build(images, keys, THRESHOLD)
    expected = exact_set(images, keys)
    assert len(expected) > 300  # the set has many near copies, and some chains
    assert index.search.nlist > 1  # a real inverted index, not one flat list
    assert pair_set(index) == expected


def test_groups_match_exact_components(images: np.ndarray) -> None:
    keys = keys_of(0, len(images))
    labels = NeighbourIndex.build(images, keys, THRESHOLD).labels(keys)
    reference = neighbours.components(len(images), exact_pairs(images, THRESHOLD))
    # Same partition: a bijection between the two labellings.
    assert len(set(zip(labels, reference, strict=True))) == len(set(labels)) == len(set(reference))


def test_adding_images_searches_only_them_and_keeps_untouched_groups(images: np.ndarray) -> None:
    old, new = images[:2400], images[2400:]
    index = NeighbourIndex.build(old, keys_of(0, 2400), THRESHOLD)
    before = dict(zip(keys_of(0, 2400), index.labels(keys_of(0, 2400)), strict=True))
    # Near copies of old images arrive with the new ones: they must join the old groups.
    copies = np.clip(old[:40].astype(int) + 1, 0, 255).astype(np.uint8)
    added = index.add(np.concatenate([new, copies]), keys_of(5000, 640))
    all_keys = np.concatenate([keys_of(0, 2400), keys_of(5000, 640)])
    everything = np.concatenate([old, new, copies])
    assert added > 40
    assert pair_set(index) == exact_set(everything, all_keys)
    labels = dict(zip(all_keys, index.labels(all_keys), strict=True))
    touched = {labels[k] for k in keys_of(5000, 640)}
    untouched = [k for k in keys_of(0, 2400) if labels[k] not in touched]
    assert 0 < len(untouched) < 2400
    # Same partition of the untouched images as before the addition.
    assert len({(before[k], labels[k]) for k in untouched}) == len({before[k] for k in untouched})


def test_removing_images_drops_their_pairs(images: np.ndarray) -> None:
    keys = keys_of(0, len(images))
    index = NeighbourIndex.build(images, keys, THRESHOLD)
    gone = keys[::3]
    assert index.remove(gone) == len(gone)
    kept = np.setdiff1d(np.arange(len(keys)), np.arange(len(keys))[::3])
    assert pair_set(index) == exact_set(images[kept], keys[kept])
    with pytest.raises(KeyError, match="sync"):
        index.labels(gone[:1])


def test_sync_adds_and_removes_to_match_the_keys(images: np.ndarray) -> None:
    keys = keys_of(0, len(images))
    index = NeighbourIndex.build(images[:2000], keys[:2000], THRESHOLD)
    wanted = keys[500:]
    summary = index.sync(wanted, lambda missing: images[np.searchsorted(keys, missing)])
    assert summary["added"] == 1000 and summary["removed"] == 500
    assert pair_set(index) == exact_set(images[500:], wanted)


def test_save_and_load_then_grow(images: np.ndarray, tmp_path: Path) -> None:
    keys = keys_of(0, len(images))
    NeighbourIndex.build(images[:2500], keys[:2500], THRESHOLD).save(tmp_path / "nb")
    loaded = NeighbourIndex.load(tmp_path / "nb")
    assert isinstance(loaded.thumbnails, np.memmap)  # not read into memory
    loaded.add(images[2500:], keys[2500:])
    assert pair_set(loaded) == exact_set(images, keys)
    assert np.array_equal(loaded.thumbnails_of(keys[[2600, 3]]), images[[2600, 3]])


def test_a_stale_format_is_refused(images: np.ndarray, tmp_path: Path) -> None:
    folder = NeighbourIndex.build(images[:100], keys_of(0, 100), THRESHOLD).save(tmp_path / "nb")
    (folder / "neighbours.json").write_text('{"format": 0, "threshold": 0.99, "nprobe": 16}')
    with pytest.raises(ValueError, match="format 0"):
        NeighbourIndex.load(folder)


def test_flat_and_tiny_sets() -> None:
    flat = np.full((3, 1024), 7, np.uint8)  # no contrast: cosine 0 with everything
    index = NeighbourIndex.build(flat, keys_of(0, 3), THRESHOLD)
    assert len(index.pairs) == 0 and len(set(index.labels(keys_of(0, 3)))) == 3
