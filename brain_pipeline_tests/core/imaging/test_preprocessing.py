"""Preprocessing removes size, colour and border cues; the tensor cache is reused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brain_pipeline.core.artifact_names import PREPROCESSING
from brain_pipeline.core.data.manifest import display_path
from brain_pipeline.core.imaging import preprocessing as imaging
from brain_pipeline.core.imaging.preprocessing import (
    Preprocessing,
    build_tensor_cache,
    equalise_foreground,
    filesystem_path,
    head_bounding_box,
    map_to_image_geometry,
    mask_to_model_geometry,
    preprocess_image,
    preprocess_with_mask,
)
from brain_pipeline.core.model.training import TrainingConfig

# Geometry tests read intensities directly, so they use the plain percentile scaling.
PERCENTILE_64 = Preprocessing(64, skull_strip=False, intensity="percentile")


def _head(
    width: int, height: int, border: int, mode: str = "L", brightness: int = 180
) -> Image.Image:
    array = np.zeros((height, width), np.uint8)
    yy, xx = np.mgrid[:height, :width]
    inner_h, inner_w = height - 2 * border, width - 2 * border
    ellipse = ((yy - height / 2) / (inner_h / 2)) ** 2 + ((xx - width / 2) / (inner_w / 2)) ** 2 < 1
    array[ellipse] = brightness
    return Image.fromarray(array).convert(mode)


def test_same_head_in_different_sizes_modes_and_borders_gives_the_same_tensor() -> None:
    small = preprocess_image(_head(120, 100, 5), PERCENTILE_64)
    large_rgb = preprocess_image(_head(480, 400, 20, mode="RGB", brightness=90), PERCENTILE_64)
    assert small.shape == large_rgb.shape == (64, 64, 1)
    assert small.dtype == np.float32 and small.max() <= 1.0 and small.min() >= 0.0
    assert np.abs(small - large_rgb).mean() < 0.03


def test_a_map_of_the_model_input_is_carried_back_onto_the_original_pixels() -> None:
    # A wide head off-centre in a bordered frame: crop, pad (top and bottom) and resize.
    image = Image.new("L", (300, 200))
    image.paste(_head(220, 120, 4), (60, 50))
    lesion = np.zeros((200, 300), bool)
    lesion[90:120, 200:240] = True
    there = mask_to_model_geometry(image, lesion, 64)
    back = map_to_image_geometry(image, there.astype(np.float32))
    assert back.shape == (200, 300) and back.dtype == np.float32
    found = back > 0.5
    assert (found & lesion).sum() / (found | lesion).sum() > 0.8
    # Outside the head's box the model saw nothing, so the map is zero there.
    top, bottom, left, right = head_bounding_box(np.asarray(image, np.float32) / 255)
    assert back[:top].max() == 0 and back[:, right:].max() == 0


def test_mask_follows_the_image_geometry() -> None:
    image = _head(200, 160, 30)
    mask = np.zeros((160, 200), bool)
    mask[70:90, 90:110] = True  # centre of the head
    tensor, moved = preprocess_with_mask(image, mask, PERCENTILE_64)
    assert moved.shape == (64, 64)
    ys, xs = np.nonzero(moved)
    assert abs(ys.mean() - 32) < 3 and abs(xs.mean() - 32) < 3
    assert tensor[ys, xs].mean() > 0.9


def test_tensor_cache_is_built_once_and_read_back(tmp_path: Path) -> None:
    files = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        _head(100 + 10 * i, 90, 4).save(path)
        files.append(path)
    first = build_tensor_cache(files, ["a", "b", "c"], Preprocessing(32), tmp_path / "cache")
    cached = list((tmp_path / "cache").glob("*.npy"))
    assert len(cached) == 1 and first.shape == (3, 32, 32, 1)
    for path in files:
        path.unlink()  # a second build must not need the images
    second = build_tensor_cache(files, ["a", "b", "c"], Preprocessing(32), tmp_path / "cache")
    assert np.array_equal(first, second)


def test_non_utf8_names_round_trip(tmp_path: Path) -> None:
    import os

    raw = os.fsdecode(b"scan\xff.jpg")
    assert filesystem_path(tmp_path, display_path(raw)) == tmp_path / raw


def test_skull_strip_removes_the_ring_and_keeps_the_brain() -> None:
    size = 200
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(yy - size / 2, xx - size / 2)
    array = np.zeros((size, size), np.uint8)
    array[radius < 70] = 120  # brain
    array[(radius > 78) & (radius < 88)] = 250  # skull ring beyond a dark gap
    plain = preprocess_image(Image.fromarray(array), PERCENTILE_64)
    stripped = preprocess_image(
        Image.fromarray(array), Preprocessing(64, skull_strip=True, intensity="percentile")
    )
    ring = plain[..., 0] > 0.9  # only the skull is that bright
    assert ring.any() and stripped[..., 0][ring].max() == 0.0
    assert stripped[28:36, 28:36].min() > 0.3  # the brain's centre survives


def test_preprocessing_record_round_trips_beside_the_model(tmp_path: Path) -> None:
    model_path = tmp_path / "model.keras"
    # A bare model file: the defaults, which are the training defaults.
    assert Preprocessing.for_model(model_path, 96) == Preprocessing(96)
    assert Preprocessing(96) == TrainingConfig(image_size=96).preprocessing
    Preprocessing(64, skull_strip=True, intensity="percentile").save(tmp_path)
    assert Preprocessing.for_model(model_path, 96) == Preprocessing(
        64, skull_strip=True, intensity="percentile"
    )


def test_a_record_from_before_intensity_modes_means_percentile_scaling(tmp_path: Path) -> None:
    (tmp_path / PREPROCESSING).write_text('{"image_size": 64, "skull_strip": false}')
    loaded = Preprocessing.for_model(tmp_path / "model.keras", 96)
    assert loaded == Preprocessing(64, skull_strip=False, intensity="percentile")


def test_unknown_intensity_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="intensity must be one of"):
        Preprocessing(64, intensity="zscore")


def _textured_head(gamma: float, gain: float) -> Image.Image:
    """A head whose tissue has structure; gamma and gain mimic another scanner's contrast."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:160, :160]
    inside = ((yy - 80) / 70) ** 2 + ((xx - 80) / 60) ** 2 < 1
    tissue = 0.2 + 0.8 * (0.5 + 0.5 * np.sin(xx / 9.0) * np.cos(yy / 13.0))
    tissue = np.clip(tissue + rng.normal(0, 0.02, tissue.shape), 0.05, 1.0)
    array = np.where(inside, gain * tissue**gamma, 0.0)
    return Image.fromarray((255 * array).astype(np.uint8))


def test_equalisation_makes_contrast_and_brightness_of_a_source_irrelevant() -> None:
    bright = _textured_head(gamma=0.6, gain=1.0)
    dark = _textured_head(gamma=1.8, gain=0.5)
    equalised = [preprocess_image(i, Preprocessing(64, skull_strip=False)) for i in (bright, dark)]
    scaled = [preprocess_image(i, PERCENTILE_64) for i in (bright, dark)]
    # Percentile scaling keeps the difference in contrast; equalisation removes it.
    assert abs(scaled[0].mean() - scaled[1].mean()) > 0.1
    assert abs(equalised[0].mean() - equalised[1].mean()) < 0.01
    assert abs(equalised[0].std() - equalised[1].std()) < 0.01
    assert np.abs(equalised[0] - equalised[1]).mean() < 0.03


def test_equalised_ties_share_one_value_and_the_background_stays_zero() -> None:
    array = np.zeros((8, 8), np.float32)
    array[2:6, 2:6] = 0.5
    array[3:5, 3:5] = 0.9  # 4 of the 16 foreground pixels
    out = equalise_foreground(array)
    assert np.all(out[array == 0] == 0)
    assert len(np.unique(out[array == 0.5])) == 1 and len(np.unique(out[array == 0.9])) == 1
    assert out[3, 3] > out[2, 2] > 0.05
    assert out[3, 3] == pytest.approx(0.05 + 0.95 * (12 + 2) / 16)


def test_cache_key_names_the_contents_and_every_setting(monkeypatch) -> None:
    base = Preprocessing(128, skull_strip=True)
    key = base.cache_key(["a", "b"])
    assert key == Preprocessing(128, skull_strip=True).cache_key(["a", "b"])  # stable
    others = [
        base.cache_key(["a", "c"]),
        base.cache_key(["b", "a"]),
        Preprocessing(384, skull_strip=True).cache_key(["a", "b"]),
        Preprocessing(128, skull_strip=False).cache_key(["a", "b"]),
        Preprocessing(128, skull_strip=True, intensity="percentile").cache_key(["a", "b"]),
    ]
    assert len({key, *others}) == 1 + len(others)
    # Tensors made by an earlier version of the preprocessing are not reused.
    monkeypatch.setattr(imaging, "PREPROCESSING_VERSION", imaging.PREPROCESSING_VERSION + "x")
    assert base.cache_key(["a", "b"]) != key


def test_head_bounding_box_ignores_a_noisy_grey_background() -> None:
    rng = np.random.default_rng(0)
    gray = np.clip(0.2 + rng.normal(0, 0.05, (120, 160)), 0, 1).astype(np.float32)
    gray[30:90, 50:130] = 0.9  # the head
    box = head_bounding_box(gray)
    # The light blur widens the head by a pixel or two; the noise adds nothing.
    assert all(abs(a - b) <= 2 for a, b in zip(box, (30, 90, 50, 130), strict=True))
    assert head_bounding_box(np.zeros((20, 30), np.float32)) == (0, 20, 0, 30)
