"""Manifests on disk, read and written in record batches (pyarrow), so that a million rows
never hold every thumbnail in memory twice.

Per-dataset manifest parts are combined by streaming their batches into one file;
thumbnails are read straight into one preallocated matrix, one row per wanted content.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from brain_pipeline.core.data.neighbours import THUMBNAIL_PIXELS

BATCH_ROWS = 16_384
SHA_CHARS = 64  # a sha256 in hex
BLOB_COLUMNS = ("thumbnail", "keypoints", "detail")


def combine(parts: Sequence[Path], out: Path, schema: pa.Schema | None = None) -> int:
    """Write the rows of every part, in order, into one parquet file; returns the row count.

    Every part is cast to `schema` (default: the first part's), so a column that holds no
    value in one part (written with the null type) still combines. Parts must have the same
    columns. Written to a temporary name and renamed, so a reader never sees half a manifest.
    """
    if not parts:
        raise ValueError("no manifest parts to combine: is any dataset configured?")
    schema = schema or pq.read_schema(parts[0])
    partial = out.with_name(out.name + ".partial")
    rows = 0
    with pq.ParquetWriter(partial, schema) as writer:
        for part in parts:
            _check_columns(part, schema)
            reader = pq.ParquetFile(part, pre_buffer=False)
            for batch in reader.iter_batches(batch_size=BATCH_ROWS):
                table = _cast(pa.Table.from_batches([batch]), schema, part)
                # One row group per batch: `write_batch` would buffer up to a million rows
                # into one row group, and a reader would then hold it whole.
                writer.write_table(table, row_group_size=BATCH_ROWS)
                rows += batch.num_rows
    partial.replace(out)
    return rows


def _check_columns(part: Path, schema: pa.Schema) -> None:
    names = pq.read_schema(part).names
    if names != schema.names:
        missing = [n for n in schema.names if n not in names]
        extra = [n for n in names if n not in schema.names]
        raise ValueError(
            f"{part}: its columns differ from the manifest's (missing: {missing or 'none'}; "
            f"unexpected: {extra or 'none'}; or another order): it was written by another "
            "version of brain_pipeline; materialize that dataset's manifest again"
        )


def _cast(table: pa.Table, schema: pa.Schema, part: Path) -> pa.Table:
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        message = f"{part}: a column's values do not fit the manifest's types: {exc}"
        raise ValueError(message) from exc


def read_without_blobs(path: Path, keep: Sequence[str] = ()) -> pd.DataFrame:
    """The manifest's table without its large per-image columns (except those in `keep`)."""
    names = pq.read_schema(path).names
    columns = [c for c in names if c not in BLOB_COLUMNS or c in keep]
    return pd.read_parquet(path, columns=columns)


def read_thumbnails(path: Path, shas: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(matrix, keys): the (n, 1024) uint8 thumbnail of each readable content, once per
    content, in the order of `shas` (default: every readable content, by first appearance).

    The hashes are read first (as fixed-width bytes, no Python object per row); then the
    file is read one batch at a time and only the rows wanted are copied into the
    preallocated matrix, so the thumbnails exist once in memory.
    """
    # pre_buffer=False: with it, batch iteration keeps what it has read until the end.
    file = pq.ParquetFile(path, pre_buffer=False)
    keys = np.concatenate(
        [
            _fixed_width(b.column("sha256"), SHA_CHARS).view(f"S{SHA_CHARS}").ravel()
            for b in _readable_batches(file, "sha256")
        ]
        or [np.zeros(0, f"S{SHA_CHARS}")]
    )
    unique, first = np.unique(keys, return_index=True)
    if shas is None:
        source_rows = np.sort(first)  # row (among readable rows) of each output row
    else:
        wanted = np.asarray(shas, dtype=f"S{SHA_CHARS}")
        position = np.searchsorted(unique, wanted).clip(0, max(len(unique) - 1, 0))
        missing = wanted[(unique[position] != wanted) if len(unique) else slice(None)]
        if len(missing):
            names = ", ".join(m.decode() for m in missing[:3])
            raise KeyError(f"{path}: no readable image with sha256 {names}")
        source_rows = first[position]
    matrix = np.empty((len(source_rows), THUMBNAIL_PIXELS), np.uint8)
    order = np.argsort(source_rows)
    sorted_rows, offset = source_rows[order], 0
    for batch in _readable_batches(file, "thumbnail"):
        lo, hi = np.searchsorted(sorted_rows, [offset, offset + batch.num_rows])
        if hi > lo:
            pixels = _fixed_width(batch.column("thumbnail"), THUMBNAIL_PIXELS)
            matrix[order[lo:hi]] = pixels[sorted_rows[lo:hi] - offset]
        offset += batch.num_rows
    return matrix, keys[source_rows].astype(str)


def _readable_batches(file: pq.ParquetFile, column: str) -> Iterator[pa.RecordBatch]:
    """`column` of the rows whose status is ok, one batch at a time."""
    for batch in file.iter_batches(batch_size=BATCH_ROWS, columns=["status", column]):
        yield batch.filter(pc.equal(batch.column("status"), "ok"))


def _fixed_width(column: pa.Array, width: int) -> np.ndarray:
    """A string or binary column whose values all have `width` bytes, as an (n, width)
    uint8 view of its buffer, without a Python object per value."""
    column = column.cast(pa.large_binary())
    offsets = np.frombuffer(column.buffers()[1], np.int64)
    offsets = offsets[column.offset : column.offset + len(column) + 1]
    if column.null_count or not (np.diff(offsets) == width).all():
        raise ValueError(f"expected values of {width} bytes in every row")
    values = np.frombuffer(column.buffers()[2], np.uint8) if len(column) else np.zeros(0, np.uint8)
    return values[offsets[0] : offsets[-1]].reshape(-1, width)
