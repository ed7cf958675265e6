"""Checksums recorded at training, and what a damaged, missing or unrecorded file reads as."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from brain_pipeline.core import artifact_names
from brain_pipeline.core.model import integrity


def _model_folder(tmp_path: Path) -> Path:
    (tmp_path / artifact_names.MODEL).write_bytes(b"weights" * 1000)
    (tmp_path / artifact_names.PREPROCESSING).write_text('{"image_size": 96}')
    return tmp_path


def test_an_untouched_folder_is_intact_and_each_fault_names_its_file(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path)
    assert integrity.check(folder).status == "unverified"  # nothing recorded yet
    with pytest.raises(integrity.ModelIntegrityError, match="cannot be verified"):
        integrity.verify(folder, require_record=True)
    assert integrity.verify(folder).status == "unverified"
    integrity.record_checksums(folder)
    assert integrity.verify(folder, require_record=True).status == "intact"

    model = folder / artifact_names.MODEL
    model.write_bytes(b"weights" * 500)  # truncated
    found = integrity.check(folder)
    assert found.status == "damaged" and len(found.problems) == 1
    assert str(model) in found.problems[0] and "3500 bytes" in found.problems[0]
    model.write_bytes(b"weightz" * 1000)  # same size, other bytes
    os.utime(model, ns=(1, 1))  # a time of its own, whatever the file system's resolution
    assert "sha256" in integrity.check(folder).describe()
    model.unlink()
    (folder / artifact_names.PREPROCESSING).write_text("{}")
    with pytest.raises(integrity.ModelIntegrityError) as raised:
        integrity.verify(folder)
    assert f"{model} is missing" in str(raised.value)
    assert str(folder / artifact_names.PREPROCESSING) in str(raised.value)
    (folder / artifact_names.CHECKSUMS).write_text("not json")
    assert "unreadable" in integrity.check(folder).describe()
