"""Manifest: every file becomes a row; hostile files are rejected with a reason, never lost."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from brain_pipeline.core.data.manifest import build_manifest, manifest_summary
from brain_pipeline.core.data.sources import DatasetSpec
from brain_pipeline_tests.hostile_files import EXPECTED_STATUS, jpeg, png, write_hostile_dataset


@pytest.fixture()
def hostile_dataset(tmp_path: Path) -> DatasetSpec:
    write_hostile_dataset(tmp_path / "hostile", outside=tmp_path / "outside")
    return DatasetSpec(name="hostile", root=tmp_path / "hostile")


def test_every_file_is_a_row_with_status_and_reason(hostile_dataset: DatasetSpec) -> None:
    manifest, decoded = build_manifest([hostile_dataset])
    rows = manifest.set_index("path")
    assert decoded == len(manifest)
    assert "link_outside.jpg" not in " ".join(manifest["path"])  # never leaves the root
    assert {path: rows.loc[path, "status"] for path in EXPECTED_STATUS} == EXPECTED_STATUS
    assert rows.loc["nested/yes/good.jpg", "target_class"] == "tumor_brain"
    assert rows.loc["no/cmyk.jpg", "target_class"] == "healthy_brain"
    assert rows.loc["nested/yes/empty.jpg", "reason"] == "empty file (0 bytes)"
    assert "not a recognised image" in rows.loc["nested/yes/page.jpg", "reason"]
    assert "truncated" in rows.loc["nested/yes/truncated.jpg", "reason"]
    for name in ("nested/yes/sixteen bit.png", "no/palette.png", "no/alpha.png", "no/cmyk.jpg"):
        assert "converted to grayscale" in rows.loc[name, "note"], name
    assert "animated (2 frames)" in rows.loc["no/animated.gif", "note"]
    assert rows.loc["no/link_inside.jpg", "sha256"] == rows.loc["no/naïve ü.jpg", "sha256"]
    assert rows.loc["no/bad\\xff name.jpg", "status"] == "ok"
    assert "corrupt" in rows.loc["no/broken chunk.png", "reason"]
    assert "EXIF orientation applied" in rows.loc["no/rotated.jpg", "note"]
    assert rows.loc["no/readme.txt", "reason"] == "not an image file (readme.txt)"
    assert pd.isna(rows.loc["no/readme.txt", "sha256"])
    assert pd.isna(rows.loc["unlabelled/x.jpg", "target_class"])
    summary = manifest_summary(manifest)
    assert summary["n_rejected"] == 4
    assert summary["n_skipped"] == 5
    assert summary["unmapped_folders"] == ["hostile/unlabelled"]


def test_decompression_bomb_is_rejected(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "bombs" / "yes"
    root.mkdir(parents=True)
    (root / "bomb.png").write_bytes(png(Image.new("L", (3000, 3000))))
    monkeypatch.setattr("brain_pipeline.core.data.manifest.MAX_IMAGE_PIXELS", 1_000_000)
    manifest, _ = build_manifest([DatasetSpec("bombs", tmp_path / "bombs")])
    assert manifest.loc[0, "status"] == "rejected"
    assert "decompression bomb" in manifest.loc[0, "reason"]


def _small_set(tmp_path: Path, count: int) -> tuple[Path, DatasetSpec]:
    root = tmp_path / "set" / "yes"
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"{i}.jpg").write_bytes(jpeg(i))
    return root, DatasetSpec("set", tmp_path / "set")


def test_rescan_decodes_only_new_or_changed_files(tmp_path: Path) -> None:
    root, spec = _small_set(tmp_path, 5)
    first, decoded_first = build_manifest([spec])
    (root / "new.jpg").write_bytes(jpeg(99))
    (root / "0.jpg").write_bytes(jpeg(100))  # rewritten: size/mtime change
    second, decoded_second = build_manifest([spec], previous=first)
    assert decoded_first == 5
    assert decoded_second == 2
    assert len(second) == 6
    assert second["keypoints"].notna().all() and second["detail"].notna().all()
    assert set(second["sha256"]) - set(first["sha256"]) == {
        second.set_index("path").loc["yes/new.jpg", "sha256"],
        second.set_index("path").loc["yes/0.jpg", "sha256"],
    }


def test_a_manifest_from_before_the_feature_columns_is_not_reused(tmp_path: Path) -> None:
    _, spec = _small_set(tmp_path, 3)
    first, _ = build_manifest([spec])
    old = first.drop(columns=["keypoints", "detail"])
    again, decoded = build_manifest([spec], previous=old)
    assert decoded == 3 and again["keypoints"].notna().all()


def test_reused_rows_follow_a_changed_class_map(tmp_path: Path) -> None:
    root = tmp_path / "set" / "yes"
    root.mkdir(parents=True)
    (root / "a.jpg").write_bytes(jpeg(1))
    first, _ = build_manifest([DatasetSpec("set", tmp_path / "set")])
    assert first.loc[0, "target_class"] == "tumor_brain"
    ignoring_yes = DatasetSpec("set", tmp_path / "set", class_map={"yes": ""})
    second, decoded = build_manifest([ignoring_yes], previous=first)
    assert decoded == 0  # nothing decoded again...
    assert pd.isna(second.loc[0, "target_class"])  # ...but the label is today's
    assert "ignored by the class map" in second.loc[0, "reason"]
