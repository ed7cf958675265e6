"""Reading the ground-truth lesion masks the manifest found, in model-input geometry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from brain_pipeline.core.data.lesions import CORE_VALUE, lesion_mask_path, lesion_masks_by_region
from brain_pipeline.core.data.manifest import build_manifest
from brain_pipeline.core.data.mask_conventions import MaskConvention
from brain_pipeline.core.data.sources import load_raw_data_config
from brain_pipeline.synthetic.phantoms import DATASET_FOLDERS, synthesize_datasets


@pytest.fixture(scope="module")
def navoneel(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic tree; the navoneel-style dataset's name, manifest rows, raw config."""
    root = tmp_path_factory.mktemp("synth") / "data"
    synthesize_datasets(root, seed=3, images_per_label=4, image_scale=0.25)
    raw = load_raw_data_config(root)
    dataset = DATASET_FOLDERS["navoneel"]
    manifest, _ = build_manifest([spec for spec in raw.datasets if spec.name == dataset])
    rows = manifest[manifest["status"] == "ok"].reset_index(drop=True)
    return root, raw, dataset, rows


def test_lesion_mask_path_replaces_the_suffix_and_rejects_escapes(tmp_path):
    path = lesion_mask_path(tmp_path, "synth_navoneel", "yes/Y3.jpg")
    assert path == tmp_path / "synth_navoneel" / "yes" / "Y3.png"
    assert lesion_mask_path(tmp_path, "d", "yes\\Y3.jpg") == tmp_path / "d" / "yes" / "Y3.png"
    with pytest.raises(ValueError, match="relative_image_path"):
        lesion_mask_path(tmp_path, "synth_navoneel", "../yes/Y3.jpg")
    with pytest.raises(ValueError, match="dataset"):
        lesion_mask_path(tmp_path, "a/b", "yes/Y3.jpg")


def test_lesion_masks_by_region_reads_the_core_or_the_whole_tumour(navoneel):
    _, raw, _, rows = navoneel
    core = lesion_masks_by_region(raw, rows, 48, ("core",))["core"]
    whole = lesion_masks_by_region(raw, rows, 48, ("whole_tumour",))["whole_tumour"]
    both = lesion_masks_by_region(raw, rows, 48)
    for region, single in (("core", core), ("whole_tumour", whole)):
        assert len(both[region]) == len(single)
        for a, b in zip(both[region], single, strict=True):
            assert (a is None and b is None) or np.array_equal(a, b)
    tumours = [i for i, path in enumerate(rows["path"]) if path.startswith("yes/")]
    assert tumours and len(tumours) < len(rows)
    assert [i for i, m in enumerate(core) if m is not None] == tumours
    assert [i for i, m in enumerate(whole) if m is not None] == tumours
    for i in tumours:
        assert core[i].shape == whole[i].shape == (48, 48)
        assert np.all(whole[i][core[i]])  # the whole tumour holds the core
    assert sum(whole[i].sum() for i in tumours) > 1.5 * sum(core[i].sum() for i in tumours)
    with pytest.raises(ValueError, match="lesion region"):
        lesion_masks_by_region(raw, rows, 48, ("oedema",))


def _with_masks_in(raw, dataset: str, folder):
    """`raw` with the dataset's masks read from a mirror `folder` instead."""
    specs = tuple(
        dataclasses.replace(spec, lesion_masks=MaskConvention(folder=folder))
        if spec.name == dataset
        else spec
        for spec in raw.datasets
    )
    return dataclasses.replace(raw, datasets=specs)


def test_a_binary_mask_reads_the_same_in_both_regions(navoneel, tmp_path):
    root, raw, dataset, rows = navoneel
    tumour = rows[rows["path"].str.startswith("yes/")].iloc[[0]]
    with Image.open(root / dataset / tumour["path"].iloc[0]) as image:
        width, height = image.size
    binary = np.zeros((height, width), np.uint8)
    binary[height // 3 : height // 2, width // 3 : width // 2] = CORE_VALUE
    mask_file = tmp_path / "masks" / tumour["lesion_mask"].iloc[0]
    mask_file.parent.mkdir(parents=True)
    Image.fromarray(binary).save(mask_file)
    read = lesion_masks_by_region(_with_masks_in(raw, dataset, tmp_path / "masks"), tumour, 48)
    assert read["core"][0].any() and np.array_equal(read["core"][0], read["whole_tumour"][0])
    # A mask that no longer fits its image (the files changed after the scan) names both.
    Image.fromarray(binary[:-3]).save(mask_file)
    with pytest.raises(ValueError, match=rf"lesion mask {mask_file} is {width}x{height - 3}"):
        lesion_masks_by_region(_with_masks_in(raw, dataset, tmp_path / "masks"), tumour, 48)


def test_rows_without_a_recorded_mask_read_nothing(navoneel):
    _, raw, dataset, rows = navoneel
    no_masks = dataclasses.replace(raw, datasets=())
    # No dataset roots either: any attempt to read a file would fail.
    read = lesion_masks_by_region(no_masks, rows.head(3).assign(lesion_mask=None), 48, ("core",))
    assert read == {"core": [None, None, None]}
