"""Every asset check FAILS on an artifact built to break it, and passes on a sound one.

Each check reads the artifact of the latest materialization of the asset it guards, so the
tests record materializations whose `path` points at hand-made files, then run the check
alone in a job.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from brain_pipeline.core.classes import TARGET_CLASSES
from brain_pipeline.core.data import resaved, shortcuts
from brain_pipeline.core.data.alterations import alterations
from brain_pipeline.core.data.manifest import THUMBNAIL_SIDE
from brain_pipeline.core.imaging.grayscale import to_grayscale
from brain_pipeline.defs import checks
from brain_pipeline.synthetic.phantoms import render_phantom

GUARDED = ["image_manifest", "balanced_index", "dataset_splits", "model_evaluation"]
GUARDED += ["gradcam_gallery"]


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def run_check(instance, check, artifacts: dict[str, Path]) -> dg.AssetCheckEvaluation:
    """Record one materialization per artifact, run `check` alone, return its evaluation."""
    for key, path in artifacts.items():
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=key, metadata={"path": dg.MetadataValue.path(str(path))}
            )
        )
    defs = dg.Definitions(
        assets=[dg.AssetSpec(key) for key in GUARDED],
        asset_checks=[check],
        jobs=[dg.define_asset_job("check", selection=dg.AssetSelection.checks(check))],
    )
    # A failed blocking check fails its run; the evaluation is what the tests look at.
    result = defs.resolve_job_def("check").execute_in_process(
        instance=instance, raise_on_error=False
    )
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def thumbnail(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, THUMBNAIL_SIDE * THUMBNAIL_SIDE)
    return pixels.astype(np.uint8).tobytes()


def manifest(rows: list[dict]) -> pd.DataFrame:
    defaults = {"dataset": "d", "width": 64, "height": 64, "mode": "L", "format": "PNG"}
    frame = pd.DataFrame([{**defaults, **row} for row in rows])
    if "thumbnail" not in frame:
        frame["thumbnail"] = [thumbnail(i) for i in range(len(frame))]
    return frame


def _no_features() -> dict:
    """Manifest feature columns of an image without keypoints (a blank detail)."""
    return {"keypoints": b"", "detail": resaved.LocalFeatures(*_EMPTY).to_bytes()[1]}


_EMPTY = (np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), np.zeros((8, 8), np.uint8))


def write(tmp_path: Path, name: str, frame: pd.DataFrame | dict) -> Path:
    path = tmp_path / name
    if isinstance(frame, pd.DataFrame):
        frame.to_parquet(path)
    else:
        path.write_text(json.dumps(frame))
    return path


def split_table(per_class: dict[str, dict[str, int]]) -> pd.DataFrame:
    """`per_class[split][class]` images, each its own content and group."""
    rows = [
        {
            "sha256": f"{split}-{name}-{i}",
            "group_id": f"g-{split}-{name}-{i}",
            "split": split,
            "target_class": name,
            "dataset": "d",
            "path": f"{name}/{i}.png",
        }
        for split, counts in per_class.items()
        for name, n in counts.items()
        for i in range(n)
    ]
    return pd.DataFrame(rows)


BALANCED = {
    split: dict.fromkeys(TARGET_CLASSES, n) for split, n in [("train", 14), ("val", 3), ("test", 3)]
}


@pytest.mark.parametrize("rejected, passed", [(1, True), (10, False)])
def test_reject_rate(instance, tmp_path: Path, rejected: int, passed: bool) -> None:
    statuses = ["rejected"] * rejected + ["ok"] * (100 - rejected) + ["skipped"] * 50
    frame = pd.DataFrame({"status": statuses, "reason": ["x"] * len(statuses)})
    evaluation = run_check(
        instance, checks.reject_rate, {"image_manifest": write(tmp_path, "m.parquet", frame)}
    )
    assert evaluation.passed is passed
    assert evaluation.metadata["reject_rate"].value == pytest.approx(rejected / 100)


def test_unmapped_folders_name_the_folder(instance, tmp_path: Path) -> None:
    frame = manifest(
        [
            {"status": "ok", "target_class": "tumor_brain", "path": "yes/a.png"},
            {"status": "ok", "target_class": None, "path": "pituitary/b.png"},
            {"status": "ok", "target_class": None, "path": "AD/c.png", "dataset": "e"},
            {"status": "skipped", "target_class": None, "path": "readme.txt", "dataset": "f"},
        ]
    )
    evaluation = run_check(
        instance, checks.unmapped_folders, {"image_manifest": write(tmp_path, "m.parquet", frame)}
    )
    assert evaluation.passed is False
    assert evaluation.metadata["folders"].value == ["d/pituitary", "e/AD"]
    assert evaluation.metadata["wholly_unmapped_datasets"].value == ["e"]
    assert "datasets with no mapped image: e;" in evaluation.description


@pytest.mark.parametrize("healthy, passed", [(checks.MIN_IMAGES_PER_CLASS, True), (3, False)])
def test_min_images_per_class(instance, tmp_path: Path, healthy: int, passed: bool) -> None:
    counts = {"healthy_brain": healthy, "tumor_brain": 40, "alzheimer_brain": 40}
    index = pd.DataFrame({"target_class": [c for c, n in counts.items() for _ in range(n)]})
    evaluation = run_check(
        instance,
        checks.min_images_per_class,
        {"balanced_index": write(tmp_path, "i.parquet", index)},
    )
    assert evaluation.passed is passed
    # Blocking: no model trained on such an index can become the champion.
    assert evaluation.blocking is True


def test_no_split_leakage_fails_on_a_shared_group_and_on_a_near_copy(
    instance, tmp_path: Path
) -> None:
    table = split_table(BALANCED)
    m = manifest(
        [
            {"sha256": s, "status": "ok", "target_class": c, "path": "p"}
            for s, c in zip(table["sha256"], table["target_class"], strict=True)
        ]
    )
    sound = {
        "dataset_splits": write(tmp_path, "s.parquet", table),
        "image_manifest": write(tmp_path, "m.parquet", m),
    }
    assert run_check(instance, checks.no_split_leakage, sound).passed is True

    # A test image whose thumbnail is a train image's, brightened: the group ids differ, so
    # only the direct comparison can see it.
    train_sha, test_sha = table["sha256"][0], table[table["split"] == "test"]["sha256"].iloc[0]
    copy = np.frombuffer(m.loc[m["sha256"] == train_sha, "thumbnail"].iloc[0], np.uint8)
    m.loc[m["sha256"] == test_sha, "thumbnail"] = (copy // 2 + 20).astype(np.uint8).tobytes()
    near = {**sound, "image_manifest": write(tmp_path, "m2.parquet", m)}
    evaluation = run_check(instance, checks.no_split_leakage, near)
    assert evaluation.passed is False and evaluation.blocking is True
    assert evaluation.metadata["held_out_images_with_a_near_duplicate_in_train"].value == 1
    assert evaluation.metadata["groups_in_several_splits"].value == 0

    # A test image that is a re-saved copy (cropped, another gamma) of a train image: its
    # thumbnail is no twin, its keypoints are.
    m = manifest(
        [
            {"sha256": s, "status": "ok", "target_class": c, "path": "p", **_no_features()}
            for s, c in zip(table["sha256"], table["target_class"], strict=True)
        ]
    )
    scan = to_grayscale(render_phantom(np.random.default_rng(0), "tumor_brain", "navoneel").image)
    copy = alterations(np.random.default_rng(0))["combined"](scan)
    for sha, image in ((train_sha, scan), (test_sha, copy)):
        keypoints, detail = resaved.local_features(image).to_bytes()
        m.loc[m["sha256"] == sha, ["keypoints", "detail"]] = pd.Series([keypoints, detail]).values
    resaved_copy = {**sound, "image_manifest": write(tmp_path, "m3.parquet", m)}
    evaluation = run_check(instance, checks.no_split_leakage, resaved_copy)
    assert evaluation.passed is False
    assert evaluation.metadata["resaved_copies"].value == 1
    assert evaluation.metadata["thumbnail_twins"].value == 0

    # One group in two splits.
    table.loc[table["split"] == "test", "group_id"] = table["group_id"][0]
    shared = {**sound, "dataset_splits": write(tmp_path, "s2.parquet", table)}
    evaluation = run_check(instance, checks.no_split_leakage, shared)
    assert evaluation.passed is False
    assert evaluation.metadata["groups_in_several_splits"].value == 1


def test_class_balance_per_split(instance, tmp_path: Path) -> None:
    sound = {"dataset_splits": write(tmp_path, "s.parquet", split_table(BALANCED))}
    assert run_check(instance, checks.class_balance_per_split, sound).passed is True
    skewed = {**BALANCED, "test": {"healthy_brain": 9, "tumor_brain": 0, "alzheimer_brain": 0}}
    broken = {"dataset_splits": write(tmp_path, "s2.parquet", split_table(skewed))}
    evaluation = run_check(instance, checks.class_balance_per_split, broken)
    assert evaluation.passed is False
    assert evaluation.metadata["max_share_deviation"].value > checks.MAX_CLASS_SHARE_DEVIATION


SOUND_SCORES = {
    "sanity_rank_corr": 0.2,
    "deletion_auc": 0.3,
    "deletion_auc_random": 0.6,
    "heat_in_brain": 0.9,
    "pointing_game": 0.7,
    "pointing_game_chance": 0.1,
    "pointing_game_whole_tumour": 0.85,
    "pointing_game_whole_tumour_chance": 0.2,
    "heat_in_whole_tumour": 0.1,
    "centre_baseline_pointing_game_whole_tumour": 0.5,
}


@pytest.mark.parametrize(
    "change",
    [{"sanity_rank_corr": 0.9}, {"deletion_auc": 0.7}],
    ids=["maps-ignore-the-weights", "deletion-worse-than-random"],
)
def test_explanation_sanity(instance, tmp_path: Path, change: dict) -> None:
    sound = {"gradcam_gallery": write(tmp_path, "scores.json", SOUND_SCORES)}
    assert run_check(instance, checks.explanation_sanity, sound).passed is True
    broken = {"gradcam_gallery": write(tmp_path, "bad.json", {**SOUND_SCORES, **change})}
    assert run_check(instance, checks.explanation_sanity, broken).passed is False


@pytest.mark.parametrize(
    "change, verdict",
    [
        ({"pointing_game_whole_tumour": 0.6}, "pointing_game_met"),
        ({"heat_in_brain": 0.5}, "heat_in_brain_met"),
        ({"deletion_auc": 0.5}, "deletion_met"),
        ({"centre_baseline_pointing_game_whole_tumour": 0.9}, "beats_centre_baseline"),
    ],
)
def test_explanation_targets_on_the_whole_tumour(
    instance, tmp_path: Path, change: dict, verdict: str
) -> None:
    sound = run_check(
        instance,
        checks.explanation_targets,
        {"gradcam_gallery": write(tmp_path, "s.json", SOUND_SCORES)},
    )
    # The core-only figure is below the target; the whole tumour's decides.
    assert sound.passed is True and sound.metadata["pointing_game"].value < checks.MIN_POINTING_GAME
    broken = run_check(
        instance,
        checks.explanation_targets,
        {"gradcam_gallery": write(tmp_path, "b.json", {**SOUND_SCORES, **change})},
    )
    assert broken.passed is False
    assert broken.metadata[verdict].value is False
    assert broken.metadata["pointing_game_whole_tumour_chance"].value == 0.2


def test_explanation_targets_without_lesion_masks_skip_the_pointing_game(
    instance, tmp_path: Path
) -> None:
    scores = {**SOUND_SCORES, "pointing_game_whole_tumour": None, "pointing_game": None}
    evaluation = run_check(
        instance, checks.explanation_targets, {"gradcam_gallery": write(tmp_path, "s.json", scores)}
    )
    assert evaluation.passed is True
    assert "pointing game not scored" in evaluation.description


def leaky_rows(n: int = 300) -> pd.DataFrame:
    """Raw files whose width gives the class away."""
    classes = [TARGET_CLASSES[i % 3] for i in range(n)]
    frame = manifest(
        [
            {"target_class": c, "width": 100 + 50 * TARGET_CLASSES.index(c), "path": "p"}
            for c in classes
        ]
    )
    frame["group_id"] = [f"g{i}" for i in range(n)]
    return frame


def test_shortcut_audit_raw_files_fails_when_size_gives_the_class_away(
    instance, tmp_path: Path
) -> None:
    rows = leaky_rows()
    probe = shortcuts.probe_accuracy(
        shortcuts.raw_file_statistics(rows), rows["target_class"], rows["group_id"]
    )
    (tmp_path / "index").mkdir()
    write(tmp_path / "index", "index.parquet", rows[["target_class"]])
    write(tmp_path / "index", "shortcut_audit.json", probe.as_dict())
    evaluation = run_check(
        instance,
        checks.shortcut_audit_raw_files,
        {"balanced_index": tmp_path / "index" / "index.parquet"},
    )
    assert evaluation.passed is False
    assert "width" in evaluation.metadata["leaking_features"].value


def test_shortcut_audit_model_inputs_fails_when_brightness_gives_the_class_away(
    instance,
    tmp_path: Path,
) -> None:
    n = 300  # the probe's trees need 20 images a leaf
    labels = np.array([TARGET_CLASSES[i % 3] for i in range(n)])
    brightness = np.array([TARGET_CLASSES.index(c) for c in labels], dtype=np.float32) / 3 + 0.1
    tensors = np.ones((n, 16, 16, 1), np.float32) * brightness[:, None, None, None]
    features = shortcuts.tensor_statistics(tensors)
    probe = shortcuts.probe_accuracy(features, labels, np.arange(n))
    metrics = {
        "shortcut_audit": {
            "model_inputs": probe.as_dict(),
            "held_out": {"margin_over_tensor_probe": -0.1},
        }
    }
    evaluation = run_check(
        instance,
        checks.shortcut_audit_model_inputs,
        {"model_evaluation": write(tmp_path, "metrics.json", metrics)},
    )
    assert evaluation.passed is False
    assert evaluation.metadata["probe_accuracy"].value > 0.9


def checks_left_out(module, defs: dg.Definitions) -> set[str]:
    """The asset checks `module` defines (at module level) that `defs` does not load."""
    defined = {
        key.name
        for value in vars(module).values()
        if isinstance(value, dg.AssetChecksDefinition)
        for key in value.check_keys
    }
    assert defined, f"{module.__name__} defines no asset check"
    return defined - {key.name for key in defs.resolve_asset_graph().asset_check_keys}


@pytest.fixture(scope="module")
def embedded_defs(tmp_path_factory: pytest.TempPathFactory) -> dg.Definitions:
    from brain_pipeline.definitions import build_definitions

    return build_definitions(artifacts_dir=tmp_path_factory.mktemp("artifacts"))


def test_every_check_defined_is_in_the_definitions(embedded_defs: dg.Definitions) -> None:
    assert checks_left_out(checks, embedded_defs) == set()


def test_a_check_left_out_of_the_definitions_is_noticed(embedded_defs: dg.Definitions) -> None:
    @dg.asset_check(asset="image_manifest")
    def forgotten() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    module = type(checks)("with_a_forgotten_check")
    vars(module).update(vars(checks), forgotten=forgotten)
    assert checks_left_out(module, embedded_defs) == {"forgotten"}
