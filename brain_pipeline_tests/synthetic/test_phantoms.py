"""Tests for brain_pipeline.synthetic.phantoms: layout, determinism, masks and disease signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brain_pipeline.core.data.lesions import CORE_VALUE, HALO_VALUE, lesion_mask_path
from brain_pipeline.core.imaging.brain_mask import dilate
from brain_pipeline.synthetic import phantoms as syn

SMALL = 0.25  # image_scale that keeps every test fast
PER_LABEL = 5
IMAGE_SUFFIXES = {".jpg", ".png"}


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in IMAGE_SUFFIXES)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, syn.SynthesisSummary]:
    root = tmp_path_factory.mktemp("synth") / "data"
    summary = syn.synthesize_datasets(root, seed=3, images_per_label=PER_LABEL, image_scale=SMALL)
    return root, summary


# --------------------------------------------------------------------------- layout and counts


def test_summary_counts_match_the_files_written(small_tree):
    root, summary = small_tree
    assert summary.root == root
    assert summary.counts == {
        "synth_navoneel": {"yes": PER_LABEL, "no": PER_LABEL},
        "synth_preetviradiya": {"Brain Tumor": PER_LABEL, "Healthy": PER_LABEL},
        "synth_alzheimer": {
            "NonDemented": PER_LABEL,
            "VeryMildDemented": PER_LABEL,
            "MildDemented": PER_LABEL,
            "ModerateDemented": PER_LABEL,
        },
    }
    datasets = [root / name for name in syn.DATASET_FOLDERS.values()]
    assert summary.n_images == sum(len(_image_files(d)) for d in datasets) == 8 * PER_LABEL
    assert summary.n_lesion_masks == 2 * PER_LABEL


def test_folder_layout_mimics_the_kaggle_downloads(small_tree):
    root, _ = small_tree
    navoneel = root / "synth_navoneel"
    assert len(_image_files(navoneel / "yes")) == PER_LABEL
    assert len(_image_files(navoneel / "no")) == PER_LABEL
    assert all(p.name.startswith("Y") for p in _image_files(navoneel / "yes"))
    assert all(p.name.startswith("N") for p in _image_files(navoneel / "no"))

    preet = root / "synth_preetviradiya" / "Brain Tumor Data Set" / "Brain Tumor Data Set"
    assert {p.name for p in _image_files(preet / "Brain Tumor")} == {
        f"Cancer ({i}).jpg" for i in range(1, PER_LABEL + 1)
    }
    assert {p.name for p in _image_files(preet / "Healthy")} == {
        f"Not Cancer  ({i}).jpg" for i in range(1, PER_LABEL + 1)
    }

    alzheimer = root / "synth_alzheimer" / "Image-dataset"
    prefixes = {
        "NonDemented": "nonDem",
        "VeryMildDemented": "verymildDem",
        "MildDemented": "mildDem",
        "ModerateDemented": "moderateDem",
    }
    for grade, prefix in prefixes.items():
        train = _image_files(alzheimer / "train" / grade)
        test = _image_files(alzheimer / "test" / grade)
        assert len(train) + len(test) == PER_LABEL
        assert len(train) > len(test)  # roughly 80/20 by whole subjects
        assert all(p.name.startswith(prefix) and p.suffix == ".jpg" for p in train + test)


def test_sizes_and_modes_follow_each_style(small_tree):
    root, _ = small_tree
    navoneel_sizes = set()
    for path in _image_files(root / "synth_navoneel"):
        with Image.open(path) as image:
            assert image.mode == "RGB"
            assert 45 <= image.width <= 80 and 45 <= image.height <= 80  # 180..320 scaled
            navoneel_sizes.add(image.size)
    assert len(navoneel_sizes) > 1  # varied sizes, unlike the other sources
    for path in _image_files(root / "synth_preetviradiya"):
        with Image.open(path) as image:
            assert (image.mode, image.size, image.format) == ("RGB", (64, 64), "JPEG")
    for path in _image_files(root / "synth_alzheimer"):
        with Image.open(path) as image:
            assert (image.mode, image.size, image.format) == ("L", (44, 52), "JPEG")


def test_lesion_masks_exist_only_for_tumour_images(small_tree):
    root, _ = small_tree
    masks_root = root / syn.LESION_MASKS_DIRNAME
    tumour_folders = {("synth_navoneel", "yes"), ("synth_preetviradiya", "Brain Tumor")}
    found = 0
    for dataset in syn.DATASET_FOLDERS.values():
        for path in _image_files(root / dataset):
            relative = path.relative_to(root / dataset).as_posix()
            mask_file = lesion_mask_path(masks_root, dataset, relative)
            is_tumour = (dataset, path.parent.name) in tumour_folders
            assert mask_file.exists() == is_tumour, relative
            if not is_tumour:
                continue
            found += 1
            with Image.open(path) as image, Image.open(mask_file) as mask_image:
                assert mask_image.mode == "L" and mask_image.size == image.size
                mask = np.asarray(mask_image)
            # A label map: the core, the oedema halo around it, and nothing else.
            assert set(np.unique(mask)) <= {0, HALO_VALUE, CORE_VALUE}
            assert (mask == CORE_VALUE).sum() > 0
    assert found == 2 * PER_LABEL
    # Masks live outside the dataset folders so ingestion never sees them as images.
    for dataset in syn.DATASET_FOLDERS.values():
        files = [p for p in (root / dataset).rglob("*") if p.is_file()]
        assert files == [p for p in files if p.suffix in IMAGE_SUFFIXES]
        assert not masks_root.is_relative_to(root / dataset)


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    first = syn.synthesize_datasets(tmp_path / "a", seed=11, images_per_label=2, image_scale=SMALL)
    syn.synthesize_datasets(tmp_path / "b", seed=11, images_per_label=2, image_scale=SMALL)
    syn.synthesize_datasets(tmp_path / "c", seed=12, images_per_label=2, image_scale=SMALL)
    a, b, c = (_tree_bytes(tmp_path / name) for name in "abc")
    assert first.n_images == 16
    assert a == b
    assert a.keys() != c.keys() or any(a[k] != c[k] for k in a)


def test_render_phantom_is_deterministic_per_generator_seed():
    def render(seed: int) -> syn.Phantom:
        return syn.render_phantom(np.random.default_rng(seed), "tumor_brain", "navoneel")

    one, two, other = render(5), render(5), render(6)
    assert one.image.tobytes() == two.image.tobytes()
    assert np.array_equal(one.lesion_mask, two.lesion_mask)
    assert one.image.tobytes() != other.image.tobytes()


# --------------------------------------------------------------------------- phantom content


@pytest.mark.parametrize(
    ("style", "mode", "size"),
    [
        ("navoneel", "RGB", None),
        ("preetviradiya", "RGB", (256, 256)),
        ("alzheimer", "L", (176, 208)),
    ],
)
def test_render_phantom_style_sizes_and_masks(style, mode, size):
    phantom = syn.render_phantom(np.random.default_rng(0), "healthy_brain", style)
    assert phantom.image.mode == mode
    if size is not None:
        assert phantom.image.size == size
    width, height = phantom.image.size
    assert phantom.brain_mask.shape == (height, width) and phantom.brain_mask.dtype == bool
    assert 0.2 < phantom.brain_mask.mean() < 0.9
    assert phantom.lesion_mask is None


def test_whole_tumour_is_core_plus_a_visible_halo():
    for seed in range(6):
        phantom = syn.render_phantom(
            np.random.default_rng(seed), "tumor_brain", "navoneel", difficulty=0.0
        )
        core, whole = phantom.lesion_mask, phantom.whole_tumour_mask
        assert whole is not None and whole.dtype == bool
        assert np.all(whole[core]) and whole.sum() > core.sum()
        assert not np.any(whole & ~phantom.brain_mask)
        labels = phantom.mask_labels()
        assert np.array_equal(labels == CORE_VALUE, core)
        assert np.array_equal(labels > 0, whole)
        # The halo is where the oedema shifts the intensity: it differs from the tissue
        # around the tumour (the two oedema signs make it brighter or darker).
        pixels = np.asarray(phantom.image.convert("L"), dtype=np.float32)
        halo = whole & ~core
        ring = dilate(whole, 6) & ~whole & phantom.brain_mask
        assert abs(np.median(pixels[halo]) - np.median(pixels[ring])) > 8.0, seed
    healthy = syn.render_phantom(np.random.default_rng(0), "healthy_brain", "navoneel")
    assert healthy.whole_tumour_mask is None and healthy.mask_labels() is None


def test_size_override_is_width_by_height():
    phantom = syn.render_phantom(
        np.random.default_rng(1), "tumor_brain", "preetviradiya", size=(96, 64)
    )
    assert phantom.image.size == (96, 64)
    assert phantom.brain_mask.shape == phantom.lesion_mask.shape == (64, 96)


def test_lesions_lie_inside_the_brain_and_are_visible_at_zero_difficulty():
    contrasts = []
    for seed in range(10):
        phantom = syn.render_phantom(
            np.random.default_rng(seed), "tumor_brain", "navoneel", difficulty=0.0
        )
        lesion, brain = phantom.lesion_mask, phantom.brain_mask
        assert lesion is not None and lesion.dtype == bool and lesion.any()
        assert (lesion & brain).sum() >= 0.95 * lesion.sum()
        assert lesion.sum() < 0.5 * brain.sum()
        pixels = np.asarray(phantom.image.convert("L"), dtype=np.float32)
        contrasts.append(abs(pixels[lesion].mean() - np.median(pixels[brain & ~lesion])))
    assert np.mean(contrasts) > 15.0


def _dark_fraction(phantom: syn.Phantom) -> float:
    """Share of brain pixels darker than half the median: ventricles and sulci (CSF)."""
    inside = np.asarray(phantom.image, dtype=np.float32)[phantom.brain_mask]
    return float(np.mean(inside < 0.5 * np.median(inside)))


def test_alzheimer_atrophy_grows_with_grade():
    def mean_dark(target_class: str, grade: str | None) -> float:
        fractions = [
            _dark_fraction(
                syn.render_phantom(
                    np.random.default_rng(seed),
                    target_class,
                    "alzheimer",
                    grade=grade,
                    difficulty=0.0,
                    size=(88, 104),
                )
            )
            for seed in range(10)
        ]
        return float(np.mean(fractions))

    healthy = mean_dark("healthy_brain", None)
    graded = [mean_dark("alzheimer_brain", grade) for grade in syn.ALZHEIMER_GRADES]
    assert healthy < graded[0] < graded[1] < graded[2]
    assert graded[2] > 1.5 * healthy


def test_healthy_and_very_mild_overlap_at_default_difficulty():
    def fractions(target_class: str, grade: str | None) -> np.ndarray:
        return np.array(
            [
                _dark_fraction(
                    syn.render_phantom(
                        np.random.default_rng(seed),
                        target_class,
                        "alzheimer",
                        grade=grade,
                        size=(88, 104),
                    )
                )
                for seed in range(20)
            ]
        )

    healthy = fractions("healthy_brain", None)
    very_mild = fractions("alzheimer_brain", "VeryMildDemented")
    # Not trivially separable by CSF area: the ranges must overlap.
    assert very_mild.min() < healthy.max()


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_class": "glioma"}, "unknown target class 'glioma'"),
        ({"style": "kaggle"}, "unknown style 'kaggle'"),
        ({"target_class": "alzheimer_brain", "grade": "Severe"}, "unknown grade 'Severe'"),
        ({"grade": "MildDemented"}, "grade only applies"),
        ({"difficulty": 1.5}, "difficulty must be in"),
        ({"difficulty": -0.1}, "difficulty must be in"),
        ({"difficulty": float("nan")}, "difficulty must be in"),
        ({"size": (8, 64)}, "at least"),
    ],
)
def test_render_phantom_rejects_bad_arguments(kwargs, message):
    arguments = {"target_class": "healthy_brain", "style": "navoneel", **kwargs}
    with pytest.raises(ValueError, match=message):
        syn.render_phantom(np.random.default_rng(0), **arguments)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images_per_label": 0}, "images_per_label must be at least 1"),
        ({"difficulty": 2.0}, "difficulty must be in"),
        ({"image_scale": 0.0}, "image_scale"),
    ],
)
def test_synthesize_datasets_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        syn.synthesize_datasets(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_refuses_to_mix_runs_but_accepts_empty_folders(tmp_path):
    out = tmp_path / "out"
    (out / "synth_alzheimer" / "Image-dataset" / "train").mkdir(parents=True)
    summary = syn.synthesize_datasets(out, images_per_label=1, image_scale=SMALL)
    assert summary.n_images == 8
    with pytest.raises(ValueError, match="synth_navoneel"):
        syn.synthesize_datasets(out, images_per_label=1, image_scale=SMALL)


def test_tiny_scale_keeps_the_minimum_side(tmp_path):
    syn.synthesize_datasets(tmp_path / "out", images_per_label=1, image_scale=0.01)
    for path in _image_files(tmp_path / "out"):
        with Image.open(path) as image:
            assert min(image.size) == syn.MIN_SCALED_SIDE
