"""Is a trained model's folder still what training wrote? Checksums recorded at training.

A model file on a shared mount can be truncated by a full disk, overwritten by a stray
copy or deleted. Training records the sha256 of the files serving loads (`checksums.json`
beside them); promotion refuses a challenger whose files no longer match, a fresh service
refuses a damaged champion (naming the file), and a running one reports it in `/health`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from brain_pipeline.core import artifact_names
from brain_pipeline.core.artifacts import write_json

# What serving reads of a model folder.
VERIFIED_FILES = (artifact_names.MODEL, artifact_names.PREPROCESSING)


class ModelIntegrityError(ValueError):
    """A model's files differ from what training recorded (or the record is missing)."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_checksums(folder: Path, names: tuple[str, ...] = VERIFIED_FILES) -> Path:
    """Write `checksums.json`: the sha256 and size of each of `names` in `folder`."""
    folder = Path(folder)
    record = {
        name: {"sha256": file_sha256(folder / name), "bytes": (folder / name).stat().st_size}
        for name in names
    }
    return write_json(folder / artifact_names.CHECKSUMS, record)


@dataclass(frozen=True)
class Integrity:
    """`intact` (every recorded file matches), `unverified` (no record: a model trained
    before records were kept, or a bare file) or `damaged` (`problems` name each file)."""

    status: str
    problems: tuple[str, ...] = ()

    def describe(self) -> str:
        return "; ".join(self.problems) or self.status


def check(folder: Path) -> Integrity:
    """The folder's files against the record training wrote."""
    folder = Path(folder)
    record_path = folder / artifact_names.CHECKSUMS
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError:
        return Integrity("unverified", (f"no {record_path}: the files cannot be verified",))
    except (OSError, ValueError) as exc:
        return Integrity("damaged", (f"{record_path} is unreadable: {exc}",))
    found = [problem for name in sorted(record) if (problem := _problem(folder, name, record))]
    return Integrity("damaged", tuple(found)) if found else Integrity("intact")


def _problem(folder: Path, name: str, record: dict) -> str | None:
    path, expected = folder / name, record[name]
    try:
        stat = path.stat()
    except FileNotFoundError:
        return f"{path} is missing"
    actual = _cached_sha256(str(path), stat.st_mtime_ns, stat.st_size)
    if stat.st_size == expected["bytes"] and actual == expected["sha256"]:
        return None
    return (
        f"{path} is damaged: {stat.st_size} bytes, sha256 {actual[:12]}..., but training "
        f"wrote {expected['bytes']} bytes, sha256 {expected['sha256'][:12]}..."
    )


def verify(folder: Path, *, require_record: bool = False) -> Integrity:
    """The folder's integrity; ModelIntegrityError naming each file when damaged (or, with
    `require_record`, when nothing was recorded)."""
    integrity = check(folder)
    if integrity.status == "damaged" or (require_record and integrity.status != "intact"):
        raise ModelIntegrityError(integrity.describe())
    return integrity


@lru_cache(maxsize=64)
def _cached_sha256(path: str, mtime_ns: int, size: int) -> str:
    """One hash per version of a file (its path, modification time and size), so a service
    that verifies its model every few seconds reads it once."""
    return file_sha256(Path(path))
