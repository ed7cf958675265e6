"""Writing artifact files safely, and the provenance record beside each of them.

Every write goes to a temporary file in the same folder and is renamed into place, so a
reader sees either the old file or the complete new one, never a partial file, even if the
writer is killed mid-write.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from brain_pipeline.core import artifact_names

_TRACKED_PACKAGES = (
    "brain_pipeline",
    "dagster",
    "tensorflow",
    "keras",
    "numpy",
    "pandas",
    "scikit-learn",
    "pillow",
    "codecarbon",
)


@contextmanager
def atomic_path(destination: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `destination`; rename it into place on success.

    `suffix` is the temporary name's ending, for writers that choose the format by it
    (Keras wants `.keras`).
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=suffix, dir=destination.parent
    )
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        os.replace(tmp_path, destination)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(destination, exc.errno) from exc
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


class DiskFullError(OSError):
    """No space (or quota) left while writing an artifact: names the file and what the file
    system has left. The temporary file is removed; the previous version of the artifact,
    if any, is untouched."""

    def __init__(self, destination: Path, code: int = errno.ENOSPC, needed: int | None = None):
        free = shutil.disk_usage(Path(destination).parent)
        wants = f" (it needs about {needed / 1e6:.1f} MB)" if needed else ""
        super().__init__(
            code,
            f"no space left on the device writing {destination}{wants}: {free.free / 1e6:.1f} "
            f"MB free of {free.total / 1e6:.1f} MB on its file system; free space (or move the "
            "artifacts root, BRAIN_PIPELINE_ARTIFACTS_DIR) and re-execute the run from failure",
        )
        self.destination = destination


def write_bytes(destination: Path, data: bytes) -> Path:
    with atomic_path(destination) as tmp:
        tmp.write_bytes(data)
    return Path(destination)


def write_json(destination: Path, payload: Any) -> Path:
    text = json.dumps(payload, indent=2, sort_keys=True, default=_json_default)
    return write_bytes(destination, text.encode("utf-8"))


def parquet_columns(path: Path) -> list[str]:
    """The column names of a parquet file, read from its footer (no data is loaded)."""
    import pyarrow.parquet as pq

    return pq.read_schema(path).names


def write_parquet(destination: Path, frame: pd.DataFrame, schema: Any = None) -> Path:
    """Write a frame as parquet, atomically; `schema` (a pyarrow schema) fixes the column
    types, so that a column with no value in this frame keeps its type."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, schema=schema)
    return write_bytes(destination, buffer.getvalue())


def figure_png(figure: Any, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def write_figure(destination: Path, figure: Any, dpi: int = 110) -> bytes:
    """Save a matplotlib figure as PNG atomically; return the PNG bytes for the UI."""
    png = figure_png(figure, dpi)
    write_bytes(destination, png)
    return png


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_provenance(artifact_dir: Path, record: dict[str, Any]) -> Path:
    """Write `provenance.json` into an artifact folder (package versions added)."""
    full = {**record, "package_versions": package_versions()}
    return write_json(Path(artifact_dir) / artifact_names.PROVENANCE, full)


def find_provenance(artifact_path: Path) -> Path | None:
    """The provenance record that covers a file: the nearest `provenance.json` above it."""
    path = Path(artifact_path).resolve()
    for folder in [path, *path.parents] if path.is_dir() else path.parents:
        candidate = folder / artifact_names.PROVENANCE
        if candidate.is_file():
            return candidate
    return None


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def content_version(frame: pd.DataFrame, columns: list[str]) -> str:
    """A hash of the rows' values in `columns`, independent of row order and of other columns.

    Used as a data version that changes only when what downstream steps read changes: an
    index whose (sha256, group, class) rows are the same is the same index, whatever the
    file paths or the run that built it.
    """
    texts = [_text_or_missing(frame[column]) for column in columns]
    digest = hashlib.sha256("\x1e".join(columns).encode())
    for row in sorted("\x1f".join(values) for values in zip(*texts, strict=True)):
        digest.update(b"\x1e" + row.encode())
    return digest.hexdigest()[:20]


# Stands for a missing value in a content version: no file path or label holds a NUL byte,
# so a missing value never hashes like a real one ("nan", "None" or "").
MISSING_TEXT = "\x00"


def _text_or_missing(column: pd.Series) -> list[str]:
    """Each value as text; missing values (None, NaN, NA) as MISSING_TEXT, explicitly (under
    pandas 3 `astype(str)` keeps them missing, and its string dtype cuts text at a NUL)."""
    present = column.notna().to_numpy()
    values = column.to_numpy(dtype=object)
    return [str(v) if ok else MISSING_TEXT for v, ok in zip(values, present, strict=True)]
