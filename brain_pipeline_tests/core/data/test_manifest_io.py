"""Manifest parts combine by streaming, and thumbnails read back once per content."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from brain_pipeline.core.data import manifest_io


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def part(path: Path, dataset: str, names: list[str], statuses: list[str]) -> Path:
    rng = np.random.default_rng(len(names))
    thumbnails = [
        rng.integers(0, 255, 1024, dtype=np.uint8).tobytes() if status == "ok" else None
        for status in statuses
    ]
    frame = pd.DataFrame(
        {
            "dataset": dataset,
            "sha256": [sha(name) for name in names],
            "status": statuses,
            "thumbnail": thumbnails,
        }
    )
    frame.to_parquet(path)
    return path


def test_combine_keeps_every_row_in_order(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(manifest_io, "BATCH_ROWS", 2)  # several batches per part
    parts = [
        part(tmp_path / "a.parquet", "a", ["s1", "s2", "s3"], ["ok", "ok", "rejected"]),
        part(tmp_path / "b.parquet", "b", ["s2", "s4"], ["ok", "ok"]),
    ]
    rows = manifest_io.combine(parts, tmp_path / "all.parquet")
    combined = pd.read_parquet(tmp_path / "all.parquet")
    expected = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    assert rows == 5
    pd.testing.assert_frame_equal(combined, expected)
    assert not (tmp_path / "all.parquet.partial").exists()
    assert "thumbnail" not in manifest_io.read_without_blobs(tmp_path / "all.parquet")


def test_read_thumbnails_once_per_content_in_the_order_asked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(manifest_io, "BATCH_ROWS", 2)
    parts = [
        part(tmp_path / "a.parquet", "a", ["s1", "s2", "s3"], ["ok", "ok", "rejected"]),
        part(tmp_path / "b.parquet", "b", ["s2", "s4"], ["ok", "ok"]),
    ]
    manifest_io.combine(parts, tmp_path / "all.parquet")
    frame = pd.read_parquet(tmp_path / "all.parquet")
    first_ok = frame[frame["status"] == "ok"].drop_duplicates("sha256").set_index("sha256")

    matrix, keys = manifest_io.read_thumbnails(tmp_path / "all.parquet")
    assert list(keys) == [sha("s1"), sha("s2"), sha("s4")]  # once each, first seen first
    for row, key in zip(matrix, keys, strict=True):
        assert row.tobytes() == first_ok.loc[key, "thumbnail"]

    chosen, keys = manifest_io.read_thumbnails(tmp_path / "all.parquet", [sha("s4"), sha("s1")])
    assert list(keys) == [sha("s4"), sha("s1")]
    assert chosen[0].tobytes() == first_ok.loc[sha("s4"), "thumbnail"]
    with pytest.raises(KeyError, match=sha("s3")):  # rejected: no thumbnail to read
        manifest_io.read_thumbnails(tmp_path / "all.parquet", [sha("s3")])


def test_parts_with_other_columns_are_refused(tmp_path: Path) -> None:
    good = part(tmp_path / "a.parquet", "a", ["s1"], ["ok"])
    other = tmp_path / "b.parquet"
    pd.DataFrame({"dataset": ["b"], "sha256": [sha("s2")]}).to_parquet(other)
    differ = r"b.parquet: its columns differ.*missing: \['status', 'thumbnail'\]"
    with pytest.raises(ValueError, match=differ):
        manifest_io.combine([good, other], tmp_path / "all.parquet")
    with pytest.raises(ValueError, match="no manifest parts"):
        manifest_io.combine([], tmp_path / "all.parquet")


def test_a_wholly_unmapped_dataset_combines_with_a_mapped_one(tmp_path: Path) -> None:
    """An all-missing column (no target_class, no sha256) keeps its type in the fixed schema,
    where pandas alone would write the null type and the parts would not combine."""
    from brain_pipeline.core.artifacts import write_parquet
    from brain_pipeline.core.data.manifest import MANIFEST_SCHEMA, build_manifest
    from brain_pipeline.core.data.sources import DatasetSpec
    from brain_pipeline_tests.hostile_files import jpeg

    for folder, name in (("mapped/yes", "a.jpg"), ("unmapped/scans", "b.jpg")):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / name).write_bytes(jpeg(len(folder)))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    parts = []
    for name in ("mapped", "unmapped", "notes"):
        frame, _ = build_manifest([DatasetSpec(name, tmp_path / name)])
        parts.append(write_parquet(tmp_path / f"{name}.parquet", frame, schema=MANIFEST_SCHEMA))
        untyped = tmp_path / f"{name}_untyped.parquet"
        frame.to_parquet(untyped)
        if name != "mapped":  # the failure the fixed schema prevents
            assert not pq.read_schema(untyped).equals(pq.read_schema(tmp_path / "mapped.parquet"))
    assert manifest_io.combine(parts, tmp_path / "all.parquet", MANIFEST_SCHEMA) == 3
    combined = pd.read_parquet(tmp_path / "all.parquet").set_index("dataset")
    assert combined.loc["mapped", "target_class"] == "tumor_brain"
    assert pd.isna(combined.loc["unmapped", "target_class"])
    assert combined.loc["notes", "status"] == "skipped"
    assert pq.read_schema(tmp_path / "all.parquet").equals(MANIFEST_SCHEMA)
