"""Manifest: every file becomes a row; hostile files are rejected with a reason, never lost."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from brain_pipeline.core.data.manifest import build_manifest, manifest_summary
from brain_pipeline.core.data.sources import DatasetSpec


def _jpeg(value: int = 120, size=(40, 48), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(value)
    array = rng.integers(0, 255, size=(size[1], size[0]), dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(buffer, format="JPEG")
    return buffer.getvalue()


def _png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


@pytest.fixture()
def hostile_dataset(tmp_path: Path) -> DatasetSpec:
    root = tmp_path / "hostile"
    yes, no = root / "nested" / "yes", root / "no"
    yes.mkdir(parents=True)
    no.mkdir(parents=True)
    (yes / "good.jpg").write_bytes(_jpeg(1))
    (yes / "empty.jpg").write_bytes(b"")
    (yes / "page.jpg").write_bytes(b"<html><body>404 not found</body></html>")
    (yes / "truncated.jpg").write_bytes(_jpeg(2, size=(200, 200))[:600])
    sixteen = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    (yes / "sixteen bit.png").write_bytes(_png(sixteen))
    (no / "cmyk.jpg").write_bytes(_jpeg(3, mode="CMYK"))
    palette = Image.fromarray(np.full((30, 30), 7, np.uint8)).convert("P")
    (no / "palette.png").write_bytes(_png(palette, transparency=0))
    rgba = Image.new("RGBA", (20, 20), (200, 100, 50, 128))
    (no / "alpha.png").write_bytes(_png(rgba))
    frames = [Image.new("L", (16, 16), v) for v in (10, 200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    (no / "animated.gif").write_bytes(buffer.getvalue())
    (no / "naïve ü.jpg").write_bytes(_jpeg(4))
    (no / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (no / "notes.txt").write_text("scanner notes")
    os.symlink(no / "naïve ü.jpg", no / "link_inside.jpg")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(_jpeg(5))
    os.symlink(outside, no / "link_outside.jpg")
    os.symlink(root, root / "nested" / "loop")
    bad_name = os.fsencode(str(no)) + b"/bad\xff name.jpg"
    with open(bad_name, "wb") as handle:
        handle.write(_jpeg(6))
    good_png = bytearray(_png(Image.new("L", (16, 16), 90)))
    idat = good_png.index(b"IDAT")
    good_png[idat + 6] ^= 0xFF  # corrupt the compressed data: its CRC no longer matches
    (no / "broken chunk.png").write_bytes(bytes(good_png))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buffer = io.BytesIO()
    Image.new("L", (40, 20), 120).save(buffer, format="JPEG", exif=exif)
    (no / "rotated.jpg").write_bytes(buffer.getvalue())
    (no / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "unlabelled").mkdir()
    (root / "unlabelled" / "x.jpg").write_bytes(_jpeg(7))
    return DatasetSpec(name="hostile", root=root)


def test_every_file_is_a_row_with_status_and_reason(hostile_dataset: DatasetSpec) -> None:
    manifest, decoded = build_manifest([hostile_dataset])
    rows = manifest.set_index("path")
    assert decoded == len(manifest)
    assert "link_outside.jpg" not in " ".join(manifest["path"])  # never leaves the root
    assert rows.loc["nested/yes/good.jpg", "status"] == "ok"
    assert rows.loc["nested/yes/good.jpg", "target_class"] == "tumor_brain"
    assert rows.loc["no/cmyk.jpg", "target_class"] == "healthy_brain"
    assert rows.loc["nested/yes/empty.jpg", "reason"] == "empty file (0 bytes)"
    assert "not a recognised image" in rows.loc["nested/yes/page.jpg", "reason"]
    assert "truncated" in rows.loc["nested/yes/truncated.jpg", "reason"]
    for name in ("nested/yes/sixteen bit.png", "no/palette.png", "no/alpha.png", "no/cmyk.jpg"):
        assert rows.loc[name, "status"] == "ok", name
        assert "converted to grayscale" in rows.loc[name, "note"], name
    assert "animated (2 frames)" in rows.loc["no/animated.gif", "note"]
    assert rows.loc["no/naïve ü.jpg", "status"] == "ok"
    assert rows.loc["no/link_inside.jpg", "sha256"] == rows.loc["no/naïve ü.jpg", "sha256"]
    assert rows.loc["no/bad\\xff name.jpg", "status"] == "ok"
    assert "corrupt" in rows.loc["no/broken chunk.png", "reason"]
    assert "EXIF orientation applied" in rows.loc["no/rotated.jpg", "note"]
    assert rows.loc["no/Thumbs.db", "status"] == "skipped"
    assert rows.loc["no/.DS_Store", "status"] == "skipped"
    assert rows.loc["no/notes.txt", "status"] == "skipped"
    assert pd.isna(rows.loc["unlabelled/x.jpg", "target_class"])
    summary = manifest_summary(manifest)
    assert summary["n_rejected"] == 4
    assert summary["n_skipped"] == 3
    assert summary["unmapped_folders"] == ["hostile/unlabelled"]


def test_decompression_bomb_is_rejected(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "bombs" / "yes"
    root.mkdir(parents=True)
    (root / "bomb.png").write_bytes(_png(Image.new("L", (3000, 3000))))
    monkeypatch.setattr("brain_pipeline.core.data.manifest.MAX_IMAGE_PIXELS", 1_000_000)
    manifest, _ = build_manifest([DatasetSpec("bombs", tmp_path / "bombs")])
    assert manifest.loc[0, "status"] == "rejected"
    assert "decompression bomb" in manifest.loc[0, "reason"]


def _small_set(tmp_path: Path, count: int) -> tuple[Path, DatasetSpec]:
    root = tmp_path / "set" / "yes"
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"{i}.jpg").write_bytes(_jpeg(i))
    return root, DatasetSpec("set", tmp_path / "set")


def test_rescan_decodes_only_new_or_changed_files(tmp_path: Path) -> None:
    root, spec = _small_set(tmp_path, 5)
    first, decoded_first = build_manifest([spec])
    (root / "new.jpg").write_bytes(_jpeg(99))
    (root / "0.jpg").write_bytes(_jpeg(100))  # rewritten: size/mtime change
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
    (root / "a.jpg").write_bytes(_jpeg(1))
    first, _ = build_manifest([DatasetSpec("set", tmp_path / "set")])
    assert first.loc[0, "target_class"] == "tumor_brain"
    ignoring_yes = DatasetSpec("set", tmp_path / "set", class_map={"yes": ""})
    second, decoded = build_manifest([ignoring_yes], previous=first)
    assert decoded == 0  # nothing decoded again...
    assert pd.isna(second.loc[0, "target_class"])  # ...but the label is today's
    assert "ignored by the class map" in second.loc[0, "reason"]
