"""Model versions that earn their place: sweep partitions, the leaderboard, champion /
challenger promotion with overrides and rollbacks, serving the champion, the model card.

One instance and artifacts root for the module. Three trainings on the tiny data, each a run
of full_pipeline for one configuration (a partition), as a backfill over partitions launches
them: an untrained model (1 epoch at a learning rate of 1e-6) becomes the first champion, a
trained one (12 epochs) replaces it, and a second untrained one is kept out.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pandas as pd
import pytest

from brain_pipeline.apps.cli import main
from brain_pipeline.apps.console import prepare_home
from brain_pipeline.core.model.promotion import PromotionHistory
from brain_pipeline.definitions import FULL_PIPELINE_JOB, build_definitions
from brain_pipeline_tests.conftest import DATASETS

# Each materializes, trains or serves on its own: not in the fast tier.
pytestmark = pytest.mark.slow

TINY = {"image_size": 48, "batch_size": 16, "warmup_epochs": 0}
UNTRAINED = {"epochs": 1, "learning_rate": 1e-6}


class Registry:
    def __init__(self, data_dir: Path, artifacts: Path) -> None:
        self.artifacts = artifacts
        self.defs = build_definitions(data_dir=data_dir, artifacts_dir=self.artifacts)
        self.instance = dg.DagsterInstance.get()
        self.history = PromotionHistory(self.artifacts / "model_registry")

    def run(
        self, configuration: str, champion: dict | None = None, raise_on_error=True, **settings
    ):
        """Run full_pipeline for one configuration (a partition); the run's result."""
        run_config = {
            "ops": {
                "trained_model": {"config": {**TINY, **settings}},
                "gradcam_gallery": {"config": {"images_per_gallery": 2}},
                **({"champion_model": {"config": champion}} if champion else {}),
            }
        }
        return self.defs.resolve_job_def(FULL_PIPELINE_JOB).execute_in_process(
            run_config=run_config,
            instance=self.instance,
            partition_key=configuration,
            raise_on_error=raise_on_error,
        )

    def train(self, configuration: str, champion: dict | None = None, **settings) -> dict:
        """Run full_pipeline for one configuration; the champion decision's metadata."""
        result = self.run(configuration, champion, **settings)
        assert result.success
        (event,) = [
            e
            for e in result.get_asset_materialization_events()
            if e.asset_key.path == ["champion_model"]
        ]
        return {k: v.value for k, v in event.materialization.metadata.items()}

    def latest(self, key: str) -> dict:
        event = self.instance.get_latest_materialization_event(dg.AssetKey(key))
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@contextlib.contextmanager
def registry_in(data_dir: Path, root: Path, artifacts: Path | None = None):
    """A Registry with its own instance under `root` and its artifacts there too (or in
    `artifacts`); the environment stays set until the block ends."""
    artifacts = artifacts or root / "artifacts"
    patch = pytest.MonkeyPatch()
    patch.setenv("DAGSTER_HOME", str(root / "dagster"))
    patch.setenv("BRAIN_PIPELINE_DATA_DIR", str(data_dir))
    patch.setenv("BRAIN_PIPELINE_ARTIFACTS_DIR", str(artifacts))
    try:
        prepare_home()
        registry = Registry(data_dir, artifacts)
        yield registry
        registry.instance.dispose()
    finally:
        patch.undo()


@pytest.fixture(scope="module")
def registry(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    with registry_in(tiny_data_dir, tmp_path_factory.mktemp("registry")) as registry:
        registry.decisions = [
            registry.train("compact_64_short", **UNTRAINED),
            registry.train("stacked_96", epochs=12),
            registry.train("compact_96", seed=5, **UNTRAINED),
        ]
        yield registry


def test_the_first_model_is_promoted_and_a_better_one_replaces_it(registry: Registry) -> None:
    first, better, _ = registry.decisions
    assert first["decision"] == "promoted" and first["reason"] == "no champion yet"
    assert first["champion_version"].startswith("compact_64_short@")
    assert better["decision"] == "promoted"
    assert better["previous_champion"] == first["champion_version"]
    assert better["champion_version"] == better["challenger_version"]
    assert better["challenger_version"].startswith("stacked_96@")
    # Scored on the same images: the test split both models share.
    assert better["comparison_images"] > 0
    assert better["challenger_macro_f1"] > better["champion_macro_f1"] + 0.01


def test_a_worse_challenger_is_kept_and_predict_still_uses_the_champion(
    registry: Registry, tiny_data_dir: Path, capsys
) -> None:
    _, better, worse = registry.decisions
    assert worse["decision"] == "kept"
    assert worse["challenger_version"].startswith("compact_96@")
    assert worse["champion_version"] == better["champion_version"]
    assert worse["challenger_macro_f1"] < worse["champion_macro_f1"] - 0.01
    assert "lower by more than the margin 0.01" in worse["reason"]
    expected_keys = {
        "champion_version",
        "challenger_version",
        "decision",
        "champion_macro_f1",
        "challenger_macro_f1",
        "comparison_images",
        "reason",
    }
    assert expected_keys <= set(worse)
    image = sorted((tiny_data_dir / "synth_navoneel" / "yes").iterdir())[0]
    assert main(["predict", str(image)]) == 0
    err = capsys.readouterr().err
    assert f"model {better['champion_version']} (champion)" in err


def test_the_leaderboard_has_a_row_per_configuration_with_energy(registry: Registry) -> None:
    board = pd.read_parquet(registry.latest("leaderboard")["path"])
    assert sorted(board["configuration"]) == ["compact_64_short", "compact_96", "stacked_96"]
    assert (board["energy_kwh"] > 0).all() and (board["co2_g"] > 0).all()
    assert (board["train_seconds"] > 0).all()
    assert board["on_pareto_front"].any()
    best = board.iloc[0]
    assert best["configuration"] == "stacked_96" and best["f1_macro"] == board["f1_macro"].max()
    # Each configuration trained in its own partition with its own artifacts.
    for configuration in board["configuration"]:
        assert (registry.artifacts / "trained_model" / configuration).is_dir()
    metadata = registry.latest("leaderboard")
    assert metadata["n_model_versions"] == 3 and "pareto_front.png" in metadata["pareto_front"]


def test_an_override_and_a_rollback_are_recorded(registry: Registry, capsys) -> None:
    _, better, worse = registry.decisions
    forced = registry.train(
        "compact_96", champion={"force": True}, seed=5, **UNTRAINED
    )  # the same inputs: the model is reused, the decision is new
    assert forced["decision"] == "promoted" and forced["decision_kind"] == "override"
    assert forced["champion_version"] == worse["challenger_version"]
    assert forced["reason"].startswith("forced (force: true)")

    assert main(["models", "promote", better["champion_version"]]) == 0
    assert "recorded as a manual promotion" in capsys.readouterr().out
    records = registry.history.records()
    assert [r["kind"] for r in records][-2:] == ["override", "manual"]
    assert records[-1]["champion_version"] == worse["challenger_version"]
    assert registry.history.champion()["serving_version"] == better["champion_version"]
    # The UI shows the hand-made decision as champion_model's latest materialization.
    assert registry.latest("champion_model")["decision_kind"] == "manual"

    assert main(["models", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    status = {row["model_version"]: row["status"] for row in rows}
    assert status == {
        better["champion_version"]: "champion",
        worse["challenger_version"]: "retired",
        registry.decisions[0]["champion_version"]: "retired",
    }
    assert main(["models", "promote", "nope@1"]) == 2
    assert "no evaluated model version 'nope@1'" in capsys.readouterr().err


def test_the_model_card_describes_the_champion(registry: Registry) -> None:
    metadata = registry.latest("model_card")
    card = json.loads((Path(metadata["path"]).parent / "model_card.json").read_text())
    markdown = metadata["model_card"]
    assert card["model_details"]["model_version"] == metadata["model_version"]
    assert "not a diagnostic device" in card["intended_use"]["out_of_scope"].lower()
    data = card["training_data"]
    # The datasets with mapped images (not the unmapped one, nor the one without images).
    assert data["sources"] == [
        "adni_slices",
        "download_extras",
        "lgg_kaggle_3m",
        "synth_alzheimer",
        "synth_navoneel",
        "synth_preetviradiya",
    ]
    assert (
        sum(sum(row.values()) for row in data["images_per_class_and_split"].values())
        == (data["images_after_deduplication"])
    )
    # Per source: the training sources with images in the test split (the tiny LGG-like set's
    # three patients may all land in train or val).
    per_source = set(card["metrics"]["per_source"])
    assert {"synth_alzheimer", "synth_navoneel", "synth_preetviradiya"} <= per_source
    assert per_source <= set(data["sources"])
    # Two sources hold Alzheimer (and healthy) images: the card says so, and gives healthy vs
    # Alzheimer within each of them that has both classes in the test split.
    assert card["limitations"][-1].startswith(
        "Alzheimer images come from 2 sources (adni_slices, synth_alzheimer)"
    )
    by_source = card["metrics"]["healthy_vs_alzheimer_by_source"]
    assert set(by_source) <= {"adni_slices", "synth_alzheimer"}
    assert all(row["n_images"] > 0 for row in by_source.values())
    assert ("within each source holding both" in markdown) == bool(by_source)
    assert card["metrics"]["expected_calibration_error"] is not None
    temperature = card["model_details"]["training"]["temperature"]
    assert temperature > 0 and f"temperature scaling (T = {temperature:.2f}" in markdown
    assert card["metrics"]["shortcut_probes"]["margin_over_raw_file_probe"] is not None
    assert card["explanations"].get("heat_in_brain") is not None
    assert card["energy"]["training"]["energy_kwh"] > 0
    lineage = {step["asset_key"] for step in card["lineage"]}
    assert {"trained_model", "dataset_splits", "image_manifest"} <= lineage
    raw = {k for step in card["lineage"] for k in step["raw_data_versions"]}
    assert raw == {f"raw/{name}" for name in DATASETS}  # every raw dataset is upstream
    for heading in ("## Intended use", "## Training data", "## Metrics", "## Limitations"):
        assert heading in markdown
    assert main(["lineage", metadata["path"]]) == 0


def test_a_failed_blocking_check_in_the_lineage_is_found(tmp_path: Path) -> None:
    """The champion gate reads each lineage step's check results in the run that recorded
    it: a failed blocking check is named, a failed warning or a passed check is not."""
    from brain_pipeline.core.artifacts import write_provenance
    from brain_pipeline.defs.models import (
        ChampionConfig,
        _decide_and_record,
        failed_blocking_checks,
    )

    @dg.asset(name="dataset_splits")
    def splits() -> None:
        return None

    def check(name: str, passed: bool, blocking: bool, severity=dg.AssetCheckSeverity.ERROR):
        @dg.asset_check(asset=splits, name=name, blocking=blocking)
        def _check() -> dg.AssetCheckResult:
            return dg.AssetCheckResult(passed=passed, severity=severity)

        return _check

    checks = [
        check("leaky", passed=False, blocking=True),
        check("unbalanced", passed=False, blocking=False, severity=dg.AssetCheckSeverity.WARN),
        check("sound", passed=True, blocking=True),
    ]
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [splits, *checks], instance=instance, raise_on_error=False, selection=[splits]
        )
        split_folder, model_folder = tmp_path / "splits", tmp_path / "model"
        write_provenance(split_folder, {"asset_key": "dataset_splits", "run_id": result.run_id})
        upstream = {"asset_key": "dataset_splits", "path": str(split_folder / "splits.parquet")}
        write_provenance(
            model_folder, {"asset_key": "trained_model", "run_id": "other", "upstream": [upstream]}
        )
        assert failed_blocking_checks(instance, model_folder / "model.keras") == [
            "dataset_splits:leaky"
        ]
        # Even a first candidate is refused: no version serves, and the history says why.
        history = PromotionHistory(tmp_path / "registry")
        candidate = pd.Series(
            {
                "model_version": "stacked_96@1",
                "model_path": str(model_folder / "model.keras"),
                "evaluation_path": str(model_folder / "metrics.json"),
            }
        )
        run = SimpleNamespace(instance=instance, run_id="decision")
        line = _decide_and_record(run, history, candidate, ChampionConfig())
        assert line["decision"] == "kept" and line["serving_version"] is None
        assert "dataset_splits:leaky" in line["reason"]
        assert history.champion() is None and len(history.records()) == 1
