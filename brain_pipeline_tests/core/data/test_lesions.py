"""Reading the ground-truth lesion masks beside a raw data set, in model-input geometry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from brain_pipeline.core.data.lesions import CORE_VALUE, lesion_mask_path, lesion_masks_by_region
from brain_pipeline.core.data.sources import load_raw_data_config
from brain_pipeline.synthetic.phantoms import (
    DATASET_FOLDERS,
    LESION_MASKS_DIRNAME,
    synthesize_datasets,
)


@pytest.fixture(scope="module")
def navoneel(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic tree; the navoneel-style dataset's name, paths and raw config."""
    root = tmp_path_factory.mktemp("synth") / "data"
    synthesize_datasets(root, seed=3, images_per_label=4, image_scale=0.25)
    raw = load_raw_data_config(root)
    dataset = DATASET_FOLDERS["navoneel"]
    paths = sorted(
        p.relative_to(root / dataset).as_posix()
        for p in (root / dataset).rglob("*")
        if p.suffix in {".jpg", ".png"}
    )
    return root, raw, dataset, paths


def test_lesion_mask_path_replaces_the_suffix_and_rejects_escapes(tmp_path):
    path = lesion_mask_path(tmp_path, "synth_navoneel", "yes/Y3.jpg")
    assert path == tmp_path / "synth_navoneel" / "yes" / "Y3.png"
    assert lesion_mask_path(tmp_path, "d", "yes\\Y3.jpg") == tmp_path / "d" / "yes" / "Y3.png"
    with pytest.raises(ValueError, match="relative_image_path"):
        lesion_mask_path(tmp_path, "synth_navoneel", "../yes/Y3.jpg")
    with pytest.raises(ValueError, match="dataset"):
        lesion_mask_path(tmp_path, "a/b", "yes/Y3.jpg")


def test_lesion_masks_by_region_reads_the_core_or_the_whole_tumour(navoneel):
    _, raw, dataset, paths = navoneel
    datasets = [dataset] * len(paths)
    core = lesion_masks_by_region(raw, datasets, paths, 48, ("core",))["core"]
    whole = lesion_masks_by_region(raw, datasets, paths, 48, ("whole_tumour",))["whole_tumour"]
    both = lesion_masks_by_region(raw, datasets, paths, 48)
    for region, single in (("core", core), ("whole_tumour", whole)):
        assert len(both[region]) == len(single)
        for a, b in zip(both[region], single, strict=True):
            assert (a is None and b is None) or np.array_equal(a, b)
    tumours = [i for i, path in enumerate(paths) if path.startswith("yes/")]
    assert tumours and len(tumours) < len(paths)
    assert [i for i, m in enumerate(core) if m is not None] == tumours
    assert [i for i, m in enumerate(whole) if m is not None] == tumours
    for i in tumours:
        assert core[i].shape == whole[i].shape == (48, 48)
        assert np.all(whole[i][core[i]])  # the whole tumour holds the core
    assert sum(whole[i].sum() for i in tumours) > 1.5 * sum(core[i].sum() for i in tumours)
    with pytest.raises(ValueError, match="lesion region"):
        lesion_masks_by_region(raw, datasets, paths, 48, ("oedema",))


def test_a_binary_mask_reads_the_same_in_both_regions(navoneel, tmp_path):
    root, raw, dataset, paths = navoneel
    tumour = next(path for path in paths if path.startswith("yes/"))
    with Image.open(root / dataset / tumour) as image:
        width, height = image.size
    binary = np.zeros((height, width), np.uint8)
    binary[height // 3 : height // 2, width // 3 : width // 2] = CORE_VALUE
    masks_dir = tmp_path / LESION_MASKS_DIRNAME
    mask_file = lesion_mask_path(masks_dir, dataset, tumour)
    mask_file.parent.mkdir(parents=True)
    Image.fromarray(binary).save(mask_file)
    binary_raw = dataclasses.replace(raw, lesion_masks_dir=masks_dir)
    read = lesion_masks_by_region(binary_raw, [dataset], [tumour], 48)
    assert read["core"][0].any() and np.array_equal(read["core"][0], read["whole_tumour"][0])


def test_without_a_lesion_mask_folder_nothing_is_read(navoneel):
    _, raw, dataset, paths = navoneel
    no_masks = dataclasses.replace(raw, lesion_masks_dir=None, datasets=())
    # No dataset roots either: any attempt to read a file would fail.
    read = lesion_masks_by_region(no_masks, [dataset] * 3, paths[:3], 48, ("core",))
    assert read == {"core": [None, None, None]}
