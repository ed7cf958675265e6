"""Deletion / insertion AUCs and the randomised-weights sanity check on the tiny CNN."""

from __future__ import annotations

import numpy as np
import pytest

from brain_pipeline.core.explain.faithfulness import (
    DELETION_FILLS,
    _perturbation_curves,
    blurred_canvas,
    perturbation_aucs,
    randomize_weights,
    rank_correlation,
    ssim,
)
from brain_pipeline.core.explain.heatmaps import as_image_batch, gradcam, random_heatmaps


@pytest.mark.parametrize("fill", DELETION_FILLS)
def test_deletion_auc_beats_random_maps(model, lesion_set, fill):
    images, labels, _ = lesion_set
    maps = gradcam(model, images, labels)
    random_maps = random_heatmaps(np.random.default_rng(0), maps.shape)
    fills = (fill,)
    scored = perturbation_aucs(model, images, maps, labels, deletion_fills=fills)
    scored_rnd = perturbation_aucs(model, images, random_maps, labels, deletion_fills=fills)
    deletion, insertion = scored[f"deletion_{fill}"], scored["insertion"]
    deletion_rnd, insertion_rnd = scored_rnd[f"deletion_{fill}"], scored_rnd["insertion"]
    assert deletion.shape == insertion.shape == (len(images),)
    for auc in (deletion, insertion, deletion_rnd, insertion_rnd):
        assert np.all((auc >= 0.0) & (auc <= 1.0))
    assert deletion.mean() < deletion_rnd.mean() - 0.1
    assert insertion.mean() > insertion_rnd.mean()
    # Scoring both fills in one pass gives the same figures as one fill at a time.
    both = perturbation_aucs(model, images, maps, labels, deletion_fills=("zero", "blur"))
    np.testing.assert_allclose(both[f"deletion_{fill}"], deletion, atol=1e-5)
    np.testing.assert_allclose(both["insertion"], insertion, atol=1e-5)


def test_blurred_deletion_ends_where_insertion_starts():
    rng = np.random.default_rng(0)
    image = rng.random((32, 32)).astype(np.float32)
    heatmap = rng.random((32, 32)).astype(np.float32)
    canvas = blurred_canvas(image)
    insertion, blurred, zeroed = _perturbation_curves(image, heatmap, 4, ("blur", "zero"))
    np.testing.assert_allclose(blurred[0], image)  # nothing removed yet
    np.testing.assert_allclose(blurred[-1], canvas)  # everything removed: the blurred image
    np.testing.assert_allclose(insertion[0], canvas)
    np.testing.assert_allclose(zeroed[-1], 0.0)
    # Half-way, the hottest half of the pixels is filled in, the rest untouched.
    hottest = heatmap >= np.median(heatmap)
    np.testing.assert_allclose(blurred[2][hottest], canvas[hottest])
    np.testing.assert_allclose(blurred[2][~hottest], image[~hottest])
    with pytest.raises(ValueError, match="deletion_fill"):
        perturbation_aucs(
            None, image[None, ..., None], heatmap[None], [0], deletion_fills=("mean",)
        )
    with pytest.raises(ValueError, match="deletion_fill"):
        perturbation_aucs(None, image[None, ..., None], heatmap[None], [0], deletion_fills=())


def test_blurred_canvas_keeps_the_mean_and_removes_detail():
    rng = np.random.default_rng(1)
    image = rng.random((32, 32)).astype(np.float32)
    canvas = blurred_canvas(image)  # sigma 2 px at 32 px
    assert canvas.shape == image.shape
    assert canvas.mean() == pytest.approx(image.mean(), abs=0.01)
    assert canvas.std() < 0.3 * image.std()


def test_randomize_weights_clones_and_reseeds(model):
    before = [w.copy() for w in model.get_weights()]
    scrambled = randomize_weights(model, seed=3)
    for original, kept in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(original, kept)  # original untouched
    kernel = model.get_layer("conv2").get_weights()[0]
    assert not np.allclose(scrambled.get_layer("conv2").get_weights()[0], kernel)
    again = randomize_weights(model, seed=3)
    for a, b in zip(scrambled.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # seeded
    other = randomize_weights(model, seed=4)
    assert not np.allclose(other.get_layer("conv2").get_weights()[0], kernel)


def test_randomised_weights_break_the_maps(model, lesion_set):
    # On lesion images the trained maps carry model-specific evidence; several
    # random re-initialisations must not reproduce them.
    images, labels, _ = lesion_set
    maps = gradcam(model, images, labels)
    assert rank_correlation(maps[1], maps[1]) == pytest.approx(1.0)
    assert ssim(maps[1], maps[1]) == pytest.approx(1.0)
    for seed in range(3):
        random_model_maps = gradcam(randomize_weights(model, seed), images, labels)
        pairs = list(zip(maps, random_model_maps, strict=True))
        assert abs(np.mean([rank_correlation(a, b) for a, b in pairs])) < 0.5
        assert np.mean([ssim(a, b) for a, b in pairs]) < 0.6


def test_rank_correlation_on_hand_made_arrays():
    a = np.arange(25, dtype=float).reshape(5, 5)
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, a[::-1, ::-1]) == pytest.approx(-1.0)
    # Ties get average ranks: b's ranks are [1, 2, 3.5, 5, 3.5] -> 8 / sqrt(95).
    tied = rank_correlation(np.array([1, 2, 3, 4, 5]), np.array([5, 6, 7, 8, 7]))
    assert tied == pytest.approx(8 / np.sqrt(95))
    assert rank_correlation(a, np.zeros_like(a)) == 0.0


def test_ssim_on_hand_made_arrays():
    rng = np.random.default_rng(0)
    a = rng.random((16, 16))
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 1.0 - a) < 0.0
    assert 0.0 < ssim(a, np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)) < 0.9
    with pytest.raises(ValueError):
        ssim(np.zeros((5, 5)), np.zeros((5, 5)))


def test_scoring_traces_the_model_once_whatever_the_batch_sizes(model, lesion_set):
    """Chunks and last batches of every size share one traced graph: no retracing (which
    TensorFlow warns about, and which costs a trace per new shape)."""
    from brain_pipeline.core.model.training import _inference_function, predict_probabilities

    images, labels, _ = lesion_set
    maps = random_heatmaps(np.random.default_rng(1), as_image_batch(images)[..., 0].shape)
    perturbation_aucs(model, images, maps, labels, steps=4, max_batch_images=3 * 5 * 2 + 1)
    assert _inference_function(model).experimental_get_tracing_count() == 1  # chunks of 2 sizes
    for size in (1, 5, 7):
        probabilities = predict_probabilities(model, images[:size], batch_size=3)
        np.testing.assert_allclose(
            probabilities, model.predict_on_batch(images[:size]), rtol=1e-5, atol=1e-6
        )
    assert _inference_function(model).experimental_get_tracing_count() == 1
