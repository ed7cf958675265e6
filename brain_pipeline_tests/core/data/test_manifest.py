"""Manifest: every file becomes a row; hostile files are rejected with a reason, never lost."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from brain_pipeline.core.data.manifest import build_manifest, manifest_summary
from brain_pipeline.core.data.mask_conventions import MaskConvention
from brain_pipeline.core.data.sources import DatasetSpec
from brain_pipeline_tests.hostile_files import EXPECTED_STATUS, jpeg, png, write_hostile_dataset
from brain_pipeline_tests.layouts import write_adni_layout, write_kaggle_3m_layout


@pytest.fixture()
def hostile_dataset(tmp_path: Path) -> DatasetSpec:
    write_hostile_dataset(tmp_path / "hostile", outside=tmp_path / "outside")
    return DatasetSpec(name="hostile", root=tmp_path / "hostile")


def test_every_file_is_a_row_with_status_and_reason(hostile_dataset: DatasetSpec) -> None:
    manifest, decoded = build_manifest([hostile_dataset])
    rows = manifest.set_index("path")
    assert decoded == len(manifest)
    assert manifest["subject"].isna().all()  # no name here carries a subject id
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
    assert summary["n_skipped"] == 8  # five non-images, three lesion masks
    assert summary["n_lesion_masks"] == 1  # good.jpg's; misfit.jpg's is of another size
    assert summary["lesion_mask_problems"] == [
        rows.loc["nested/yes/misfit.jpg", "lesion_mask_problem"]
    ]
    assert rows.loc["nested/yes/good.jpg", "lesion_mask"] == "nested/yes/good_mask.png"
    assert rows.loc["nested/yes/good_mask.png", "reason"] == "lesion mask of nested/yes/good.jpg"
    assert rows.loc["nested/yes/stray_mask.png", "reason"] == "lesion mask with no image beside it"
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


def test_lesion_masks_are_recorded_with_their_image_never_as_images(tmp_path: Path) -> None:
    patients = write_kaggle_3m_layout(tmp_path / "lgg")
    manifest, _ = build_manifest([DatasetSpec("lgg", tmp_path / "lgg")])
    masks = manifest[manifest["path"].str.endswith("_mask.png")]
    images = manifest[~manifest.index.isin(masks.index)]
    assert len(masks) == len(images) == 6
    assert set(masks["status"]) == {"skipped"} and masks["sha256"].isna().all()
    assert all(reason.startswith("lesion mask of kaggle_3m/") for reason in masks["reason"])
    assert set(images["status"]) == {"ok"} and set(images["target_class"]) == {"tumor_brain"}
    assert list(images["lesion_mask"]) == [p.replace(".png", "_mask.png") for p in images["path"]]
    assert set(images["subject"]) == set(patients)


def _mirrored_layout(root: Path, mask_root: Path, sizes: dict[str, tuple[int, int]]) -> None:
    """Images `yes/<name>.jpg` (40x40) under `root`, masks `yes/<name>.png` of the given
    sizes under `mask_root`."""
    (root / "yes").mkdir(parents=True, exist_ok=True)
    (mask_root / "yes").mkdir(parents=True, exist_ok=True)
    for name in ("a", "b", "c"):
        (root / "yes" / f"{name}.jpg").write_bytes(jpeg(ord(name), size=(40, 40)))
    for name, size in sizes.items():
        (mask_root / "yes" / f"{name}.png").write_bytes(png(Image.new("L", size, 255)))


def test_masks_in_a_mirror_folder_are_found_and_one_of_another_size_is_refused(
    tmp_path: Path,
) -> None:
    _mirrored_layout(tmp_path / "set", tmp_path / "masks", {"a": (40, 40), "b": (40, 39)})
    spec = DatasetSpec(
        "set", tmp_path / "set", lesion_masks=MaskConvention(folder=tmp_path / "masks")
    )
    manifest, _ = build_manifest([spec])
    by_path = manifest.set_index("path")
    assert set(manifest["status"]) == {"ok"} and len(manifest) == 3  # masks are not rows here
    assert by_path.loc["yes/a.jpg", "lesion_mask"] == "yes/a.png"
    assert pd.isna(by_path.loc["yes/b.jpg", "lesion_mask"])  # refused: its size differs
    problem = by_path.loc["yes/b.jpg", "lesion_mask_problem"]
    mask_file = tmp_path / "masks" / "yes" / "b.png"
    assert problem == f"lesion mask {mask_file} is 40x39 but its image is 40x40: not used"
    assert pd.isna(by_path.loc["yes/c.jpg", "lesion_mask"])  # no mask at all: no problem
    assert pd.isna(by_path.loc["yes/c.jpg", "lesion_mask_problem"])
    summary = manifest_summary(manifest)
    assert summary["n_lesion_masks"] == 1 and summary["lesion_mask_problems"] == [problem]


def test_a_mirror_folder_inside_the_dataset_holds_masks_not_images(tmp_path: Path) -> None:
    root = tmp_path / "set"
    _mirrored_layout(root, root / "masks", {"a": (40, 40), "orphan": (40, 40)})
    spec = DatasetSpec("set", root, lesion_masks=MaskConvention(folder=root / "masks"))
    manifest, _ = build_manifest([spec])
    by_path = manifest.set_index("path")
    assert by_path.loc["yes/a.jpg", "lesion_mask"] == "yes/a.png"
    assert by_path.loc["masks/yes/a.png", "status"] == "skipped"
    assert by_path.loc["masks/yes/a.png", "reason"] == "lesion mask of yes/a.jpg"
    assert by_path.loc["masks/yes/orphan.png", "reason"] == "lesion mask with no image beside it"
    assert (manifest["status"] == "ok").sum() == 3  # the three images, no mask among them


def test_the_adni_layout_maps_both_classes_and_names_each_scan(tmp_path: Path) -> None:
    scans = write_adni_layout(tmp_path / "adni")
    manifest, _ = build_manifest([DatasetSpec("adni", tmp_path / "adni")])
    assert set(manifest["status"]) == {"ok"} and manifest["lesion_mask"].isna().all()
    by_label = manifest.groupby("source_label")["target_class"].unique()
    assert list(by_label["AD"]) == ["alzheimer_brain"] and list(by_label["NC"]) == ["healthy_brain"]
    assert sorted(manifest["subject"].unique()) == sorted(scans)
    assert (manifest.groupby("subject").size() == 3).all()


def test_a_mask_an_old_scan_took_for_an_image_is_not_reused_as_one(tmp_path: Path) -> None:
    write_kaggle_3m_layout(tmp_path / "lgg", patients=1, slices=1)
    spec = DatasetSpec("lgg", tmp_path / "lgg")
    first, _ = build_manifest([spec])
    old = first.drop(columns=["subject", "lesion_mask"]).assign(status="ok", reason="")
    again, decoded = build_manifest([spec], previous=old)
    assert decoded == 1  # the mask's row, made again; the image's decoded facts are reused
    mask = again[again["path"].str.endswith("_mask.png")].iloc[0]
    assert mask["status"] == "skipped" and mask["reason"].startswith("lesion mask of")
    image = again[~again["path"].str.endswith("_mask.png")].iloc[0]
    assert image["lesion_mask"] == mask["path"] and image["subject"] == "TCGA_CS_4940"
