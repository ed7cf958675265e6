"""Tests for brain_pipeline.core.explain.gradcam on tiny synthetic "brains".

Images are 32x32: a bright disc ("brain") at a random position; class 1 adds a
small bright square ("lesion") inside the disc. A tiny CNN learns the task in a
few seconds, which makes localisation, faithfulness and sanity checks testable.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from matplotlib.figure import Figure

from brain_pipeline.core.explain import gradcam as gc
from brain_pipeline.core.imaging import preprocessing as imaging
from brain_pipeline.core.imaging.preprocessing import Preprocessing
from brain_pipeline.core.phantoms import render_phantom

SIZE = 32
LESION = 4


def make_data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray | None]]:
    """Images (n, 32, 32, 1), labels alternating 0/1, lesion masks (None for class 0)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = np.zeros((n, SIZE, SIZE, 1), np.float32)
    labels = np.arange(n) % 2
    masks: list[np.ndarray | None] = []
    for i in range(n):
        radius = rng.uniform(9, 12)
        cy, cx = rng.uniform(radius + 1, SIZE - radius - 1, size=2)
        dist2 = (yy - cy) ** 2 + (xx - cx) ** 2
        image = (dist2 <= radius**2) * (rng.uniform(0.45, 0.6) + rng.normal(0, 0.03, dist2.shape))
        mask = None
        if labels[i]:
            inner = dist2 <= (radius - 1.5) ** 2
            while True:  # rejection-sample a square fully inside the disc
                y, x = rng.integers(0, SIZE - LESION, size=2)
                if inner[y : y + LESION, x : x + LESION].all():
                    break
            mask = np.zeros((SIZE, SIZE), bool)
            mask[y : y + LESION, x : x + LESION] = True
            image[mask] = 1.0
        images[i, ..., 0] = np.clip(image, 0.0, 1.0)
        masks.append(mask)
    return images, labels, masks


def build_cnn() -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(2, name="logits")(x)
    outputs = keras.layers.Activation("softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def train_data():
    return make_data(seed=0, n=256)


@pytest.fixture(scope="module")
def test_data():
    return make_data(seed=1, n=64)


@pytest.fixture(scope="module")
def model(train_data) -> keras.Model:
    keras.utils.set_random_seed(0)
    images, labels, _ = train_data
    net = build_cnn()
    net.compile(
        keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    # Train in short rounds until clearly accurate (usually ~40 epochs, ~4 s).
    for _ in range(8):
        history = net.fit(images, labels, epochs=10, batch_size=32, verbose=0)
        if history.history["accuracy"][-1] > 0.97:
            break
    return net


@pytest.fixture(scope="module")
def lesion_set(test_data):
    """Class-1 test images with their lesion masks."""
    images, labels, masks = test_data
    idx = np.flatnonzero(labels == 1)
    return images[idx], labels[idx], [masks[i] for i in idx]


def predict_classes(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return model.predict(images, verbose=0).argmax(axis=1)


# ---------------------------------------------------------------- the model


def test_tiny_cnn_is_clearly_accurate(model, train_data, test_data):
    for images, labels, _ in (train_data, test_data):
        assert (predict_classes(model, images) == labels).mean() > 0.9


def test_last_conv_layer_name(model):
    assert gc.last_conv_layer_name(model) == "conv2"
    dense_only = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="logits")])
    with pytest.raises(ValueError, match="Conv2D"):
        gc.last_conv_layer_name(dense_only)


# ---------------------------------------------------------------- heatmaps


def test_heatmaps_shape_range_and_batching(model, test_data):
    images = test_data[0][:10]
    maps = gc.gradcam(model, images)
    assert maps.shape == (10, SIZE, SIZE)
    assert maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    peaks = maps.reshape(10, -1).max(axis=1)
    assert np.all(np.isclose(peaks, 1.0) | (peaks == 0.0))
    # Batching must not change the result; the default class is the predicted one.
    np.testing.assert_allclose(gc.gradcam(model, images, batch_size=3), maps, atol=1e-5)
    predicted = predict_classes(model, images)
    np.testing.assert_allclose(gc.gradcam(model, images, predicted), maps, atol=1e-5)


def test_gradients_are_taken_of_the_logits(model, test_data):
    # Scale the logits 1000x: the softmax saturates (probability exactly 1.0, zero
    # gradient) while Grad-CAM on the logits is unchanged after normalisation.
    saturated = keras.models.clone_model(model)
    saturated.set_weights(model.get_weights())
    kernel, bias = saturated.get_layer("logits").get_weights()
    saturated.get_layer("logits").set_weights([kernel * 1e3, bias * 1e3])
    images = test_data[0]
    probs = saturated.predict(images, verbose=0)
    images = images[probs.max(axis=1) == 1.0][:8]
    assert len(images) >= 4
    classes = predict_classes(saturated, images)

    x = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        top = tf.gather(saturated(x), classes, axis=1, batch_dims=1)
    assert np.all(tape.gradient(top, x).numpy() == 0.0)  # softmax gradients are dead

    maps = gc.gradcam(saturated, images, classes)
    assert np.all(maps.reshape(len(images), -1).max(axis=1) == pytest.approx(1.0))
    np.testing.assert_allclose(maps, gc.gradcam(model, images, classes), atol=1e-4)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_pointing_game_beats_chance(model, lesion_set, method):
    images, labels, masks = lesion_set
    maps = gc.gradcam(model, images, labels, method=method)
    tolerance = gc.pointing_tolerance_px(images.shape[1])
    hits = [gc.pointing_game_hit(h, m) for h, m in zip(maps, masks, strict=True)]
    # Chance: a random peak lands in the dilated lesion.
    chance = np.mean([gc._morph(m, tolerance, erode=False).mean() for m in masks])
    assert chance < 0.25
    assert np.mean(hits) > chance + 0.5
    lesion_share = np.mean([m.mean() for m in masks])
    heat_in_lesion = np.mean([gc.heat_share(h, m) for h, m in zip(maps, masks, strict=True)])
    assert heat_in_lesion > 3 * lesion_share


def test_gradcam_plus_plus_differs_and_validates(model, lesion_set):
    images, labels, _ = lesion_set
    plain = gc.gradcam(model, images, labels)
    plus = gc.gradcam(model, images, labels, method="gradcam++")
    assert plus.shape == plain.shape and plus.min() >= 0.0 and plus.max() <= 1.0
    assert not np.allclose(plus, plain, atol=1e-3)
    with pytest.raises(ValueError, match="method"):
        gc.gradcam(model, images, labels, method="guided")
    with pytest.raises(ValueError, match="class indices"):
        gc.gradcam(model, images, labels[:3])


def test_sequential_models(model, test_data):
    images = test_data[0][:6]
    layers = [
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, name="logits"),
        keras.layers.Activation("softmax", name="probabilities"),
    ]
    sequential = keras.Sequential([keras.Input((SIZE, SIZE, 1)), *layers])
    sequential.set_weights(model.get_weights())
    np.testing.assert_allclose(gc.gradcam(sequential, images), gc.gradcam(model, images), atol=1e-5)

    # Never built: gradcam has to call it once to get symbolic inputs.
    unbuilt = keras.Sequential(
        [
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, name="logits"),
            keras.layers.Activation("softmax"),
        ]
    )
    maps = gc.gradcam(unbuilt, images, method="gradcam++")
    assert maps.shape == (6, SIZE, SIZE) and np.isfinite(maps).all()


# ---------------------------------------------------------------- faithfulness & sanity


@pytest.mark.parametrize("fill", gc.DELETION_FILLS)
def test_deletion_auc_beats_random_maps(model, lesion_set, fill):
    images, labels, _ = lesion_set
    maps = gc.gradcam(model, images, labels)
    random_maps = gc.random_heatmaps(np.random.default_rng(0), maps.shape)
    deletion, insertion = gc.deletion_insertion_auc(model, images, maps, labels, deletion_fill=fill)
    deletion_rnd, insertion_rnd = gc.deletion_insertion_auc(
        model, images, random_maps, labels, deletion_fill=fill
    )
    assert deletion.shape == insertion.shape == (len(images),)
    for auc in (deletion, insertion, deletion_rnd, insertion_rnd):
        assert np.all((auc >= 0.0) & (auc <= 1.0))
    assert deletion.mean() < deletion_rnd.mean() - 0.1
    assert insertion.mean() > insertion_rnd.mean()
    # Scoring both fills in one pass gives the same figures as one fill at a time.
    both = gc.perturbation_aucs(model, images, maps, labels, deletion_fills=("zero", "blur"))
    np.testing.assert_allclose(both[f"deletion_{fill}"], deletion, atol=1e-5)
    np.testing.assert_allclose(both["insertion"], insertion, atol=1e-5)


def test_blurred_deletion_ends_where_insertion_starts():
    rng = np.random.default_rng(0)
    image = rng.random((32, 32)).astype(np.float32)
    heatmap = rng.random((32, 32)).astype(np.float32)
    canvas = gc._blurred_canvas(image)
    insertion, blurred, zeroed = gc._perturbation_curves(image, heatmap, 4, ("blur", "zero"))
    np.testing.assert_allclose(blurred[0], image)  # nothing removed yet
    np.testing.assert_allclose(blurred[-1], canvas)  # everything removed: the blurred image
    np.testing.assert_allclose(insertion[0], canvas)
    np.testing.assert_allclose(zeroed[-1], 0.0)
    # Half-way, the hottest half of the pixels is filled in, the rest untouched.
    hottest = heatmap >= np.median(heatmap)
    np.testing.assert_allclose(blurred[2][hottest], canvas[hottest])
    np.testing.assert_allclose(blurred[2][~hottest], image[~hottest])
    with pytest.raises(ValueError, match="deletion_fill"):
        gc.deletion_insertion_auc(
            None, image[None, ..., None], heatmap[None], [0], deletion_fill="mean"
        )


def test_randomize_weights_clones_and_reseeds(model):
    before = [w.copy() for w in model.get_weights()]
    scrambled = gc.randomize_weights(model, seed=3)
    for original, kept in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(original, kept)  # original untouched
    kernel = model.get_layer("conv2").get_weights()[0]
    assert not np.allclose(scrambled.get_layer("conv2").get_weights()[0], kernel)
    again = gc.randomize_weights(model, seed=3)
    for a, b in zip(scrambled.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # seeded
    other = gc.randomize_weights(model, seed=4)
    assert not np.allclose(other.get_layer("conv2").get_weights()[0], kernel)


def test_randomised_weights_break_the_maps(model, lesion_set):
    # On lesion images the trained maps carry model-specific evidence; several
    # random re-initialisations must not reproduce them.
    images, labels, _ = lesion_set
    maps = gc.gradcam(model, images, labels)
    assert gc.rank_correlation(maps[1], maps[1]) == pytest.approx(1.0)
    assert gc.ssim(maps[1], maps[1]) == pytest.approx(1.0)
    for seed in range(3):
        random_model_maps = gc.gradcam(gc.randomize_weights(model, seed), images, labels)
        pairs = list(zip(maps, random_model_maps, strict=True))
        assert abs(np.mean([gc.rank_correlation(a, b) for a, b in pairs])) < 0.5
        assert np.mean([gc.ssim(a, b) for a, b in pairs]) < 0.6


def test_score_explanations(model, test_data):
    images, labels, masks = test_data
    maps = gc.gradcam(model, images, labels)
    scores = gc.score_explanations(model, images, maps, labels, lesion_masks=masks, seed=0)
    assert scores.n_images == 64 and scores.n_with_lesion_mask == 32
    assert scores.deletion_auc < scores.deletion_auc_random
    assert scores.deletion_auc_zero is not None and scores.deletion_auc_zero_random is not None
    assert scores.deletion_auc_zero != scores.deletion_auc  # a second, black-fill measurement
    # Looser than on lesion images alone: "healthy" maps are mostly brain-shaped,
    # which random networks partly reproduce.
    assert abs(scores.sanity_rank_corr) < 0.6 and scores.sanity_ssim < 0.6
    assert 0.0 <= scores.heat_in_brain <= 1.0
    assert scores.pointing_game is not None and scores.pointing_game > 0.6
    # Well above a peak placed at random in the brain.
    assert scores.pointing_game_chance is not None
    assert scores.pointing_game > scores.pointing_game_chance + 0.3
    assert scores.heat_in_lesion is not None and scores.heat_in_lesion > 0.05
    data = scores.as_dict()
    assert set(data) >= {"deletion_auc", "pointing_game", "n_with_lesion_mask"}
    # Only the whole-tumour figures are missing: no whole-tumour masks were given.
    missing = {k for k, v in data.items() if v is None}
    assert missing == {
        "pointing_game_whole_tumour",
        "pointing_game_whole_tumour_chance",
        "heat_in_whole_tumour",
    }
    assert all(isinstance(data[k], float | int) for k in set(data) - missing)
    assert data["pointing_tolerance_px"] == gc.pointing_tolerance_px(images.shape[1])

    # Localisation on the lesion class's maps of separately given images gives the same
    # figures here, where every lesion image is labelled (and explained as) that class.
    lesioned = np.array([m is not None and m.any() for m in masks])
    lesion_class = int(labels[lesioned][0])
    assert np.all(labels[lesioned] == lesion_class)
    separate = gc.score_explanations(
        model,
        images[:4],
        maps[:4],
        labels[:4],
        lesion_images=images[lesioned],
        lesion_masks=[masks[i] for i in np.flatnonzero(lesioned)],
        lesion_class=lesion_class,
    )
    assert separate.n_images == 4 and separate.n_with_lesion_mask == 32
    assert separate.pointing_game == pytest.approx(scores.pointing_game)
    assert separate.heat_in_lesion == pytest.approx(scores.heat_in_lesion, abs=1e-4)
    with pytest.raises(ValueError, match="lesion_class"):
        gc.score_explanations(model, images, maps, labels, lesion_images=images)

    # Against a larger "whole tumour" (each lesion grown by 2 px): at least the core's hit
    # rate and heat, and a higher chance rate; the core's figures stay as they were.
    grown = [None if m is None else gc._morph(m, 2, erode=False) for m in masks]
    whole = gc.score_explanations(
        model, images, maps, labels, lesion_masks=masks, whole_tumour_masks=grown, seed=0
    )
    assert whole.pointing_game == scores.pointing_game
    assert whole.pointing_game_chance == pytest.approx(scores.pointing_game_chance)
    assert whole.pointing_game_whole_tumour >= scores.pointing_game
    assert whole.heat_in_whole_tumour > scores.heat_in_lesion
    assert whole.pointing_game_whole_tumour_chance > scores.pointing_game_chance
    assert scores.pointing_game_whole_tumour is None and scores.heat_in_whole_tumour is None
    with pytest.raises(ValueError, match="whole_tumour_masks"):
        gc.score_explanations(
            model, images, maps, labels, lesion_masks=masks, whole_tumour_masks=grown[:3]
        )

    healthy = labels == 0
    no_masks = gc.score_explanations(model, images[healthy], maps[healthy], labels[healthy])
    assert no_masks.pointing_game is None and no_masks.heat_in_lesion is None
    assert no_masks.n_with_lesion_mask == 0

    # heat_in_brain is measured against the brain mask that fits the preprocessing.
    for stripped in (False, True):
        subset = gc.score_explanations(
            model, images[:8], maps[:8], labels[:8], skull_stripped=stripped
        )
        expected = [
            gc.heat_share(h, gc.brain_mask(i, skull_stripped=stripped))
            for h, i in zip(maps[:8], images[:8], strict=True)
        ]
        assert subset.heat_in_brain == pytest.approx(np.mean(expected))


# ---------------------------------------------------------------- brain mask


def _ring_phantom(ring_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """64x64 'head': bright skull ring, brain disc (0.5) with a dark centre 'ventricle'."""
    yy, xx = np.mgrid[:64, :64]
    dist = np.hypot(yy - 31.5, xx - 31.5)
    brain_radius = 22 - ring_gap
    image = np.where(dist <= brain_radius, 0.5, 0.0)
    image[dist <= 4] = 0.0  # dark "ventricle": a hole that must be filled
    ring = (dist > 22) & (dist <= 25)
    image[ring] = 1.0
    return image.astype(np.float32), ring


@pytest.mark.parametrize("ring_gap", [0, 3])
def test_brain_mask_excludes_skull_ring_and_keeps_centre(ring_gap):
    image, ring = _ring_phantom(ring_gap)
    mask = gc.estimate_brain_mask(image[..., None])
    assert mask.shape == (64, 64) and mask.dtype == bool
    assert not mask[ring].any()
    assert mask[28:36, 28:36].all()


def test_brain_mask_skull_stripped_and_blank():
    yy, xx = np.mgrid[:64, :64]
    dist = np.hypot(yy - 31.5, xx - 31.5)
    image = np.where(dist <= 24, 0.6, 0.0).astype(np.float32)
    image[5:8, 5:8] = 0.9  # small bright speck: not the largest region
    mask = gc.estimate_brain_mask(image)
    assert mask[32, 32] and not mask[dist > 21].any()
    assert mask.sum() > 0.6 * (dist <= 24).sum()
    assert not gc.estimate_brain_mask(np.zeros((16, 16))).any()


def _phantom_inputs(style: str, preprocessing: Preprocessing, n: int = 2):
    """(model input, true brain mask in its geometry) for n phantoms of one source style."""
    rng = np.random.default_rng(7)
    target, grade = (
        ("alzheimer_brain", "MildDemented") if style == "alzheimer" else ("tumor_brain", None)
    )
    for _ in range(n):
        phantom = render_phantom(rng, target, style, grade=grade, size=(160, 160))
        yield preprocessing.apply(phantom.image, phantom.brain_mask)


def _recall_precision(mask: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    overlap = (mask & truth).sum()
    return overlap / truth.sum(), overlap / max(mask.sum(), 1)


@pytest.mark.parametrize("intensity", ["equalise", "percentile"])
@pytest.mark.parametrize(
    ("style", "min_recall", "min_precision"),
    [("navoneel", 0.95, 0.8), ("preetviradiya", 0.95, 0.8), ("alzheimer", 0.6, 0.95)],
)
def test_brain_mask_matches_the_phantoms_true_brain(style, min_recall, min_precision, intensity):
    # The generator knows each phantom's brain; the estimate must find most of it in model
    # inputs of either intensity mode (an Otsu split found about half on equalised ones).
    for tensor, truth in _phantom_inputs(style, Preprocessing(96, intensity=intensity)):
        recall, precision = _recall_precision(gc.estimate_brain_mask(tensor), truth)
        assert recall >= min_recall and precision >= min_precision


@pytest.mark.parametrize("style", ["navoneel", "alzheimer"])
def test_large_images_get_the_mask_of_a_reduced_copy(style, monkeypatch):
    # Above MASK_MAX_SIDE the mask comes from a block-averaged copy (2 x 2 blocks at 384 px),
    # scaled back: the same mask as at full resolution but for a thin edge, in the shape of
    # the image, and as close to the true brain.
    for tensor, truth in _phantom_inputs(style, Preprocessing(384), n=1):
        fast = gc.estimate_brain_mask(tensor)
        full = gc.estimate_brain_mask(tensor, max_side=None)
        assert fast.shape == full.shape == truth.shape
        assert np.array_equal(fast, fast[::2, ::2].repeat(2, axis=0).repeat(2, axis=1))
        assert not np.array_equal(fast, full)  # it really came from the reduced copy
        assert (fast & full).sum() / (fast | full).sum() > 0.97
        assert _recall_precision(fast, truth)[0] == pytest.approx(
            _recall_precision(full, truth)[0], abs=0.02
        )

    # Caches of such inputs made with the full-resolution mask are not reused; the keys of
    # inputs at or below MASK_MAX_SIDE are the ones they were.
    def keys():
        return [Preprocessing(size, skull_strip=True).cache_key(["x"]) for size in (128, 384)]

    reduced = keys()
    monkeypatch.setattr(imaging, "MASK_MAX_SIDE", 10_000)  # as before: never reduced
    unreduced = keys()
    assert reduced[0] == unreduced[0] and reduced[1] != unreduced[1]
    # An odd side is padded to a whole number of blocks and cropped back.
    assert gc.estimate_brain_mask(np.pad(tensor[..., 0], ((0, 1), (0, 3)))).shape == (385, 387)


@pytest.mark.parametrize("intensity", ["equalise", "percentile"])
@pytest.mark.parametrize(
    ("style", "min_recall", "min_precision"),
    [("navoneel", 0.95, 0.8), ("preetviradiya", 0.95, 0.8), ("alzheimer", 0.7, 0.95)],
)
def test_brain_mask_of_skull_stripped_inputs(style, min_recall, min_precision, intensity):
    # A stripped input's brain is what stripping kept; estimating it again would erode the
    # cortex a second time. (The Alzheimer style has no skull, so stripping itself takes
    # its outer band: the lower recall bound.)
    stripped = Preprocessing(96, skull_strip=True, intensity=intensity)
    for tensor, truth in _phantom_inputs(style, stripped):
        recall, precision = _recall_precision(gc.brain_mask(tensor, skull_stripped=True), truth)
        assert recall >= min_recall and precision >= min_precision
        eroded_twice, _ = _recall_precision(gc.brain_mask(tensor), truth)
        assert eroded_twice < recall - 0.15


# ---------------------------------------------------------------- metric helpers


def test_rank_correlation_on_hand_made_arrays():
    a = np.arange(25, dtype=float).reshape(5, 5)
    assert gc.rank_correlation(a, a) == pytest.approx(1.0)
    assert gc.rank_correlation(a, a[::-1, ::-1]) == pytest.approx(-1.0)
    # Ties get average ranks: b's ranks are [1, 2, 3.5, 5, 3.5] -> 8 / sqrt(95).
    tied = gc.rank_correlation(np.array([1, 2, 3, 4, 5]), np.array([5, 6, 7, 8, 7]))
    assert tied == pytest.approx(8 / np.sqrt(95))
    assert gc.rank_correlation(a, np.zeros_like(a)) == 0.0


def test_ssim_on_hand_made_arrays():
    rng = np.random.default_rng(0)
    a = rng.random((16, 16))
    assert gc.ssim(a, a) == pytest.approx(1.0)
    assert gc.ssim(a, 1.0 - a) < 0.0
    assert 0.0 < gc.ssim(a, np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)) < 0.9
    with pytest.raises(ValueError):
        gc.ssim(np.zeros((5, 5)), np.zeros((5, 5)))


def test_heat_share_and_pointing_game():
    heat = np.array([[1.0, 0.0], [0.0, 3.0]])
    mask = np.array([[True, False], [False, False]])
    assert gc.heat_share(heat, mask) == pytest.approx(0.25)
    assert gc.heat_share(np.zeros((2, 2)), mask) == 0.0

    heatmap = np.zeros((10, 10))
    heatmap[5, 5] = 1.0
    lesion = np.zeros((10, 10), bool)
    lesion[5, 7] = True
    assert gc.pointing_game_hit(heatmap, lesion, tolerance_px=2)
    assert not gc.pointing_game_hit(heatmap, lesion, tolerance_px=1)
    assert not gc.pointing_game_hit(np.zeros((10, 10)), lesion)
    # The standard tolerance: 15 px at 224 px, scaled to the map's side.
    assert gc.pointing_tolerance_px(224) == 15 and gc.pointing_tolerance_px(128) == 9
    assert not gc.pointing_game_hit(heatmap, lesion)  # a 10 px map gets 1 px of tolerance

    # The peak's distance to the lesion: 2 px here, 0 inside, 5 px on a 3-4-5 triangle.
    assert gc.peak_distance_px(heatmap, lesion) == pytest.approx(2.0)
    lesion[5, 5] = True
    assert gc.peak_distance_px(heatmap, lesion) == 0.0
    far = np.zeros((10, 10), bool)
    far[8, 9] = far[0, 0] = True
    assert gc.peak_distance_px(heatmap, far) == pytest.approx(5.0)
    assert gc.peak_distance_px(np.zeros((10, 10)), far) == float("inf")
    assert gc.peak_distance_px(heatmap, np.zeros((10, 10), bool)) == float("inf")


def test_pointing_game_chance_is_the_share_of_brain_near_the_lesion():
    brain = np.ones((10, 10), bool)
    lesion = np.zeros((10, 10), bool)
    lesion[5, 5] = True
    assert gc.pointing_game_chance(lesion, brain, tolerance_px=0) == pytest.approx(0.01)
    # 1 px of tolerance: the lesion and its four neighbours.
    assert gc.pointing_game_chance(lesion, brain, tolerance_px=1) == pytest.approx(0.05)
    left = np.zeros((10, 10), bool)
    left[:, :5] = True  # only the neighbour at column 4 lies in this brain
    assert gc.pointing_game_chance(lesion, left, tolerance_px=1) == pytest.approx(1 / 50)
    assert gc.pointing_game_chance(lesion, np.zeros((10, 10), bool)) == 0.0


def test_random_heatmaps_are_smooth_seeded_maps():
    maps = gc.random_heatmaps(np.random.default_rng(5), (3, 32, 32))
    assert maps.shape == (3, 32, 32) and maps.min() >= 0.0 and maps.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(maps, gc.random_heatmaps(np.random.default_rng(5), (3, 32, 32)))
    # Neighbouring pixels differ far less than for white noise (~0.33 mean |diff|).
    assert np.abs(np.diff(maps, axis=2)).mean() < 0.1


# ---------------------------------------------------------------- rendering


def test_overlay_is_rgb_uint8():
    image = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8, 1)
    heat = np.zeros((8, 8), np.float32)
    heat[2, 3] = 1.0
    rgb = gc.overlay(image, heat)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert not np.array_equal(rgb[2, 3], rgb[2, 4])  # the hot pixel is coloured
    with pytest.raises(ValueError):
        gc.overlay(image, np.zeros((4, 4)))


def test_render_gallery(model, test_data, tmp_path):
    images, labels, _ = test_data
    maps = gc.gradcam(model, images[:6])
    titles = [f"true: class_{y} / pred: class_{y} (0.93)" for y in labels[:6]]
    fig = gc.render_gallery(images[:6], maps, titles, columns=4, suptitle="synthetic")
    assert isinstance(fig, Figure)
    assert len([ax for ax in fig.axes if ax.images]) == 6
    assert any(ax.get_ylabel() == "Grad-CAM relevance" for ax in fig.axes)
    fig.savefig(tmp_path / "gallery.png")
    assert (tmp_path / "gallery.png").stat().st_size > 1000

    empty = gc.render_gallery(np.zeros((0, SIZE, SIZE)), np.zeros((0, SIZE, SIZE)), [])
    assert any("no images" in t.get_text() for t in empty.texts)
