"""The out-of-distribution guard: fitting, thresholds, measurement, saving, finding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brain_pipeline.core import artifact_names
from brain_pipeline.core.serving.guard import (
    OODGuard,
    find_guard,
    image_statistics,
    measure,
)
from brain_pipeline.core.serving.non_mri import KINDS, non_mri_images
from brain_pipeline_tests.core.serving.bad_inputs import slice_like


def _clouds(seed: int = 0):
    rng = np.random.default_rng(seed)
    cov = np.diag(np.linspace(0.5, 3.0, 12))
    inliers = rng.multivariate_normal(np.full(12, 4.0), cov, size=900)
    outliers = rng.multivariate_normal(np.full(12, 9.0), cov, size=200)
    return inliers[:500], inliers[500:700], inliers[700:], outliers


def test_the_threshold_refuses_about_one_minus_the_quantile_of_real_images() -> None:
    train, validation, test, outliers = _clouds()
    guard = OODGuard.fit(train, validation, quantile=0.95)
    assert np.mean(guard.score(validation) > guard.threshold) == pytest.approx(0.05, abs=0.011)
    report = measure(guard, test, outliers, ["shifted"] * len(outliers))
    assert report["false_rejection_rate"] < 0.12
    assert report["auroc"] > 0.99
    assert report["other_flagged_by_kind"]["shifted"] > 0.95


def test_scores_grow_with_distance_and_survive_saving(tmp_path: Path) -> None:
    train, validation, _, _ = _clouds()
    guard = OODGuard.fit(train, validation)
    near, far = train.mean(axis=0), train.mean(axis=0) + 10 * train.std(axis=0)
    assert guard.score(near)[0] < guard.threshold < guard.score(far)[0]
    guard.summary["model_path"] = "/somewhere/model.keras"
    guard.save(tmp_path)
    loaded = OODGuard.load(tmp_path)
    assert np.array_equal(loaded.score(train[:20]), guard.score(train[:20]))
    assert loaded.threshold == guard.threshold and loaded.summary["model_path"].endswith("keras")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"quantile": 1.0}, "quantile"), ({"quantile": 0.2}, "quantile")],
)
def test_bad_settings_are_named(kwargs: dict, message: str) -> None:
    train, validation, _, _ = _clouds()
    with pytest.raises(ValueError, match=message):
        OODGuard.fit(train, validation, **kwargs)
    with pytest.raises(ValueError, match="at least 10 training"):
        OODGuard.fit(train[:5], validation)


def test_the_non_mri_set_has_every_kind_and_repeats_with_its_seed() -> None:
    images = non_mri_images(per_kind=3, seed=7)
    assert [kind for kind, _ in images] == [kind for kind in KINDS for _ in range(3)]
    again = non_mri_images(per_kind=3, seed=7)
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for (_, a), (_, b) in zip(images, again, strict=True)
    )
    modes = {kind: image.mode for kind, image in images}
    assert modes["photo"] == "RGB" and modes["grey_photo"] == "L"


def test_image_statistics_tell_colour_and_frames_apart() -> None:
    slice_stats = image_statistics(slice_like())
    photo = dict(non_mri_images(per_kind=1))["photo"]
    assert slice_stats[0] == 0.0 and image_statistics(photo)[0] > 0.02  # chroma
    assert slice_stats[1] < 0.1  # an MRI slice's border is dark


def test_the_guard_is_found_beside_an_export_or_by_the_model_it_names(tmp_path: Path) -> None:
    model = tmp_path / "trained_model" / "cfg" / "run" / "model.keras"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"")
    assert find_guard(model, tmp_path) is None
    for run in ("20260101T000000_a", "20260102T000000_b"):
        folder = tmp_path / "ood_guard" / "cfg" / run
        folder.mkdir(parents=True)
        (folder / artifact_names.GUARD).write_text(json.dumps({"model_path": str(model.resolve())}))
    other = tmp_path / "ood_guard" / "cfg" / "20260103T000000_c"
    other.mkdir()
    (other / artifact_names.GUARD).write_text(json.dumps({"model_path": "/another/model.keras"}))
    assert find_guard(model, tmp_path).name == "20260102T000000_b"
    (model.parent / artifact_names.GUARD).write_text("{}")
    assert find_guard(model, tmp_path) == model.parent
