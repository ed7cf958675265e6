"""The whole asset graph, materialized once per session on tiny generated data."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from brain_pipeline.core.data.dedup import IndexSettings
from brain_pipeline.core.data.splits import SplitSettings
from brain_pipeline.core.explain.localisation import DICE_PERCENTILES
from brain_pipeline.core.model.sweep import load_sweep
from brain_pipeline.definitions import FULL_PIPELINE_JOB, build_definitions
from brain_pipeline.defs import ingestion, training
from brain_pipeline.defs.resources import CarbonTracker
from brain_pipeline_tests.conftest import (
    ASSETS,
    DATASETS,
    FAST_RUN,
    MANIFEST_PARTS,
    MaterializedRun,
)
from brain_pipeline_tests.hostile_files import EXPECTED_STATUS

# Every asset that reuses its artifact when its inputs are unchanged; the champion decision
# and the model card are recomputed on each run.
MEMOISED = [key for key in ASSETS if key not in ("champion_model", "model_card")]


def test_definitions_load_with_one_source_per_dataset(tiny_data_dir: Path, tmp_path: Path) -> None:
    defs = build_definitions(data_dir=tiny_data_dir, artifacts_dir=tmp_path)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"raw/synth_navoneel", "raw/synth_preetviradiya", "raw/synth_alzheimer"} <= keys
    assert set(ASSETS) <= keys
    dg.Definitions.validate_loadable(defs)
    # One partition per sweep configuration, on the assets that exist once per model.
    graph = defs.resolve_asset_graph()
    partitioned = {
        k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).is_partitioned
    }
    assert partitioned == {
        "trained_model",
        "model_evaluation",
        "gradcam_gallery",
        "ood_guard",
        "external_evaluation",
        "emissions_record",
    }
    spec = graph.get(dg.AssetKey("trained_model")).partitions_def
    assert spec.get_partition_keys() == load_sweep().names


def test_the_sweep_file_given_decides_the_partitions(tiny_data_dir: Path, tmp_path: Path) -> None:
    sweep_file = tmp_path / "two.toml"
    sweep_file.write_text(
        'default = "small"\n[configurations.small]\nimage_size = 48\n'
        "[configurations.large]\nimage_size = 128\n"
    )
    defs = build_definitions(tiny_data_dir, tmp_path / "artifacts", sweep_file=sweep_file)
    graph = defs.resolve_asset_graph()
    for key in ("trained_model", "model_evaluation", "emissions_record"):
        assert graph.get(dg.AssetKey(key)).partitions_def.get_partition_keys() == [
            "small",
            "large",
        ]
    storage = defs.resources["storage"]
    assert storage.sweep_file == str(sweep_file) and storage.sweep().default == "small"


def test_the_launchpad_defaults_are_the_core_training_defaults() -> None:
    from brain_pipeline.core.model.training import TrainingConfig

    sweep = load_sweep()
    assert training.TrainingParams().to_core(sweep, sweep.default) == TrainingConfig()
    no_augmentation = training.TrainingParams(augment=False).to_core(sweep, sweep.default)
    assert no_augmentation.augmentation.enabled is False
    # A configuration's own settings, and settings given at launch on top of them.
    long = training.TrainingParams(seed=3).to_core(sweep, "stacked_128_long")
    assert (long.image_size, long.epochs, long.lr_schedule, long.seed) == (128, 60, "constant", 3)
    assert ingestion.IndexConfig().to_core() == IndexSettings()
    assert ingestion.SplitConfig().to_core() == SplitSettings()
    assert ingestion.SplitConfig(test_images_per_class=50).to_core().test_images_per_class == 50


def test_every_asset_materializes_and_observes_sources(materialized: MaterializedRun) -> None:
    assert set(materialized.metadata) == {*ASSETS, *MANIFEST_PARTS}
    assert materialized.observed == {f"raw/{name}" for name in DATASETS}
    for key in (*ASSETS, *MANIFEST_PARTS):
        path = materialized.path(key)
        assert path.exists(), key
        assert (path.parent / "provenance.json").exists(), key


def test_datasets_toml_is_parsed_once_per_run(materialized: MaterializedRun) -> None:
    # Once to build the code location (one raw source and one manifest per dataset), once
    # for the run: every step asks the storage resource, which parses it on first use.
    assert materialized.raw_config_reads == 2


def test_data_artifacts_are_well_formed(materialized: MaterializedRun) -> None:
    metadata, checks = materialized.metadata, materialized.checks
    manifest = pd.read_parquet(materialized.path("image_manifest"))
    assert len(manifest) == metadata["image_manifest"]["n_files"].value
    # The combined manifest holds each dataset's part, row for row.
    parts = [pd.read_parquet(materialized.path(part)) for part in MANIFEST_PARTS]
    assert sorted(manifest["path"]) == sorted(pd.concat(parts)["path"])
    assert sum(metadata[part]["n_files"].value for part in MANIFEST_PARTS) == len(manifest)
    synthetic = manifest[manifest["dataset"].str.startswith("synth_")]
    assert (synthetic["status"] == "ok").sum() == 8 * 12
    index = pd.read_parquet(materialized.path("balanced_index"))
    assert index["sha256"].is_unique
    assert index["target_class"].value_counts().nunique() == 1  # balanced
    splits = pd.read_parquet(materialized.path("dataset_splits"))
    assert set(splits["split"]) == {"train", "val", "test"}
    assert (splits.groupby("group_id")["split"].nunique() == 1).all()
    assert checks["no_split_leakage"] is True
    assert checks["min_images_per_class"] is True
    assert {"shortcut_audit_raw_files", "shortcut_audit_model_inputs"} <= set(checks)


def test_subjects_named_in_file_names_stay_in_one_split(materialized: MaterializedRun) -> None:
    """The ADNI-like and kaggle_3m-like downloads: every scan's slices share a group and a
    split, the masks never become images, and each image records its mask."""
    manifest = pd.read_parquet(materialized.path("image_manifest"))
    lgg = manifest[manifest["dataset"] == "lgg_kaggle_3m"]
    masks = lgg["path"].str.endswith("_mask.png")
    assert masks.sum() == 6 and set(lgg.loc[masks, "status"]) == {"skipped"}
    assert lgg.loc[~masks, "lesion_mask"].notna().all()
    splits = pd.read_parquet(materialized.path("dataset_splits"))
    named = splits.explode("subjects").dropna(subset=["subjects"])
    assert {name.split(":")[0] for name in named["subjects"]} == {"adni_slices", "lgg_kaggle_3m"}
    assert (named.groupby("subjects")["group_id"].nunique() == 1).all()
    assert (named.groupby("subjects")["split"].nunique() == 1).all()
    assert not splits["path"].str.endswith("_mask.png").any()
    metadata = materialized.metadata["balanced_index"]
    assert metadata["groups_joined_by_subject_ids"].value > 0
    assert {"adni_slices", "lgg_kaggle_3m"} <= set(metadata["groups_per_source"].value)
    assert materialized.checks["no_split_leakage"] is True


def test_every_kind_of_downloaded_file_goes_through_the_whole_job(
    materialized: MaterializedRun,
) -> None:
    """Skipped, rejected, unmapped files, links and odd names (hostile_files.py), a wholly
    unmapped dataset and one with no image: the job completes (every asset materialized), each
    file is the row the manifest tests expect, and the unmapped ones are reported."""
    manifest = pd.read_parquet(materialized.path("image_manifest")).set_index(["dataset", "path"])
    extras = manifest.loc["download_extras"]
    assert {path: extras.loc[path, "status"] for path in EXPECTED_STATUS} == EXPECTED_STATUS
    assert extras.loc["no/bad\\xff name.jpg", "status"] == "ok"
    assert extras.loc["nested/yes/good.jpg", "lesion_mask"] == "nested/yes/good_mask.png"
    assert pd.isna(extras.loc["nested/yes/misfit.jpg", "lesion_mask"])
    problem = extras.loc["nested/yes/misfit.jpg", "lesion_mask_problem"]
    assert "misfit_mask.png is 48x40 but its image is 40x48" in problem
    problems = materialized.metadata["image_manifest"]["lesion_mask_problems"].value
    assert any("misfit_mask.png" in problem for problem in problems)
    assert "no/link_outside.jpg" not in extras.index
    assert manifest.loc[("synth_navoneel", "no/readme.txt"), "status"] == "skipped"
    assert set(manifest.loc["notes_only", "status"]) == {"skipped"}
    assert manifest.loc["unmapped_scans", "target_class"].isna().all()
    assert set(materialized.metadata) == {*ASSETS, *MANIFEST_PARTS}
    assert materialized.checks["unmapped_folders"] is False  # a warning, not a stop
    index = pd.read_parquet(materialized.path("balanced_index"))
    assert "unmapped_scans" not in set(index["dataset"])
    assert not set(index["dataset"]) & {"notes_only"}
    readable = manifest[(manifest["status"] == "ok") & manifest["target_class"].notna()]
    assert set(index["sha256"]) <= set(readable["sha256"])


def test_model_evaluation_and_gallery_are_recorded(materialized: MaterializedRun) -> None:
    metadata = materialized.metadata
    model = keras.models.load_model(materialized.path("trained_model"))
    assert model.input_shape == (None, 48, 48, 1)
    history = json.loads((materialized.path("trained_model").parent / "history.json").read_text())
    assert len(history["loss"]) == 2
    training = json.loads((materialized.path("trained_model").parent / "training.json").read_text())
    kept = training["best_epoch"]
    # The default schedule keeps its last epoch; restoring the best is tested in the core.
    assert training["config"]["restore_best_weights"] is False
    assert kept == training["epochs_run"] == 2
    assert metadata["trained_model"]["val_loss"].value == pytest.approx(
        history["val_loss"][kept - 1]
    )
    evaluation = metadata["model_evaluation"]
    metrics = json.loads(materialized.path("model_evaluation").read_text())
    assert evaluation["accuracy"].value == pytest.approx(metrics["accuracy"])
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert np.array(metrics["confusion_matrix"]).sum() == evaluation["n_test_images"].value
    assert "data:image/png;base64," in evaluation["confusion_matrix"].value
    assert "data:image/png;base64," in evaluation["roc_curves"].value
    audit = metrics["shortcut_audit"]
    assert 0 <= audit["model_inputs"]["accuracy"] <= 1
    assert evaluation["margin_over_tensor_probe"].value == pytest.approx(
        metrics["accuracy"] - audit["held_out"]["tensor_probe_test_accuracy"]
    )
    gallery = metadata["gradcam_gallery"]
    for key in (
        "deletion_auc",
        "deletion_auc_random",
        "insertion_auc",
        "sanity_rank_corr",
        "heat_in_brain",
    ):
        assert key in gallery, key
    # Localisation covers the tumour test images (a lesion too small to survive the resize to
    # 48 px is left out), with the standard pointing-game tolerance.
    scores = json.loads(materialized.path("gradcam_gallery").read_text())
    splits = pd.read_parquet(materialized.path("dataset_splits"))
    test_tumours = (splits["split"] == "test") & (splits["target_class"] == "tumor_brain")
    assert 0 < scores["n_with_lesion_mask"] <= int(test_tumours.sum())
    assert 0.0 <= gallery["pointing_game"].value <= 1.0
    assert 0.0 <= gallery["heat_in_lesion"].value <= 1.0
    # The whole tumour (core and oedema halo) holds the core: every hit on the core is a hit
    # on it, and a randomly placed peak lands near it at least as often.
    assert scores["pointing_game_whole_tumour"] >= scores["pointing_game"]
    assert scores["heat_in_whole_tumour"] >= scores["heat_in_lesion"]
    assert 0.0 < scores["pointing_game_chance"] <= scores["pointing_game_whole_tumour_chance"] < 1
    assert scores["pointing_tolerance_px"] == 3  # 15 px at 224 px -> 3 px at 48 px
    # Per dataset with masks in the test split (the phantoms' mirror folder, the LGG-like
    # set's masks beside its images), each figure with an interval over patients.
    tested = splits[test_tumours & splits["lesion_mask"].notna()]
    by_dataset = scores["localisation_by_dataset"]
    assert set(by_dataset) <= set(tested["dataset"]) and set(by_dataset) & {
        "synth_navoneel",
        "synth_preetviradiya",
    }
    # Whole-tumour masks that survive the resize (each holds its core: no fewer than those).
    total = sum(row["n_images"] for row in by_dataset.values())
    assert scores["n_with_lesion_mask"] <= total <= len(tested)
    for row in by_dataset.values():
        # Dice at the threshold the training patients' maps chose (the phantoms train too).
        for figure in ("pointing_game", "energy_in_lesion", "top5_in_lesion", "dice"):
            assert row[figure]["low"] <= row[figure]["estimate"] <= row[figure]["high"]
        assert row["dice_percentile"] in DICE_PERCENTILES
        assert 0 < row["lesion_area_fraction"]["estimate"] < 1
        assert 1 <= row["n_patients"] <= row["n_images"]
    assert gallery["localisation_by_dataset"].value == by_dataset
    record = json.loads(
        (materialized.path("trained_model").parent / "preprocessing.json").read_text()
    )
    assert record == {"image_size": 48, "skull_strip": True, "intensity": "equalise"}
    folder = materialized.path("gradcam_gallery").parent
    pngs = sorted(p.name for p in folder.glob("*.png"))
    # Six class/outcome galleries, and one lesion gallery per dataset with masked test images.
    lesion_pngs = {f"lesions_{dataset}.png" for dataset in by_dataset}
    assert lesion_pngs <= set(pngs) and len(pngs) == 6 + len(lesion_pngs)
    assert "tumor_brain_correct.png" in pngs
    assert all(f"gallery_{name[:-4]}" in gallery for name in pngs)
    with Image.open(folder / pngs[0]) as image:
        assert image.size[0] > 100


def test_emissions_are_recorded_for_each_tracked_step(materialized: MaterializedRun) -> None:
    metadata = materialized.metadata
    history = pd.read_parquet(materialized.path("emissions_record"))
    # Decoding is measured per dataset manifest; combining them is not tracked (no decoding).
    assert set(history["asset_key"]) == {
        *MANIFEST_PARTS,
        "trained_model",
        "model_evaluation",
        "gradcam_gallery",
    }
    training = history[history["asset_key"] == "trained_model"].iloc[0]
    assert training["measured"] and training["energy_kwh"] > 0
    assert training["country_iso_code"] == "USA"  # CarbonTracker's default
    assert metadata["trained_model"]["energy_kwh"].value > 0
    assert metadata["emissions_record"]["n_model_versions"].value == 1


@pytest.mark.slow
def test_unchanged_inputs_reuse_artifacts_and_changed_config_recomputes(
    materialized: MaterializedRun, tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The session's run is the cold one; these runs go on in its instance and artifacts root,
    # with energy tracking off (the tracker's settings are not an input of any artifact).
    defs = build_definitions(
        data_dir=tiny_data_dir,
        artifacts_dir=materialized.artifacts,
        carbon=CarbonTracker(enabled=False),
    )
    job = defs.resolve_job_def(FULL_PIPELINE_JOB)
    cold_events = materialized.metadata
    with dg.DagsterInstance.get() as instance:

        def run(config):
            job.execute_in_process(
                run_config=config, instance=instance, partition_key=load_sweep().default
            )
            events = {
                key: instance.get_latest_materialization_event(
                    dg.AssetKey(key)
                ).asset_materialization
                for key in MEMOISED
            }
            return {key: event.metadata["cache_hit"].value for key, event in events.items()}, events

        assert not any(cold_events[key]["cache_hit"].value for key in MEMOISED)
        warm, warm_events = run(FAST_RUN)
        assert all(warm.values()), warm
        assert warm_events["trained_model"].metadata["path"] == cold_events["trained_model"]["path"]
        assert warm_events["trained_model"].metadata["reused_from_run"].value == (
            materialized.run_id
        )

        reseeded = json.loads(json.dumps(FAST_RUN))
        reseeded["ops"]["trained_model"]["config"]["seed"] = 7
        partial, events = run(reseeded)
        assert partial["image_manifest"] and partial["dataset_splits"]
        assert not partial["trained_model"] and not partial["model_evaluation"]
        # The emissions history now spans two model versions; unmeasured steps stay explicit.
        record = events["emissions_record"].metadata
        assert record["n_model_versions"].value == 2
        history = pd.read_parquet(record["path"].value)
        trainings = history[history["asset_key"] == "trained_model"]
        assert len(trainings) == 2
        assert trainings["measured"].tolist() == [True, False]
        assert trainings["measurement_mode"].iloc[-1] == "not measured"

        # New preprocessing code makes new input tensors: the model is trained again.
        monkeypatch.setattr(training, "PREPROCESSING_VERSION", "changed")
        after_code_change, _ = run(reseeded)
        assert after_code_change["dataset_splits"]
        assert not after_code_change["trained_model"]
