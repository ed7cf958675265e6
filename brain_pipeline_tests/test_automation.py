"""The sensor and the schedule request a run when raw data changes, and skip otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from brain_pipeline.core.model.promotion import PromotionHistory, PromotionRecord
from brain_pipeline.core.model.sweep import load_sweep
from brain_pipeline.definitions import build_definitions
from brain_pipeline.defs.automation import retrain_configuration
from brain_pipeline.defs.resources import PipelineStorage
from brain_pipeline_tests.conftest import DATASETS

SWEEP = load_sweep()  # the repository's sweep.toml, as the definitions under test read it

# Each materializes, trains or serves on its own: not in the fast tier.
pytestmark = pytest.mark.slow


@pytest.fixture()
def data_copy(tiny_data_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "raw"
    shutil.copytree(tiny_data_dir, copy, symlinks=True)  # the links stay links
    return copy


def _evaluate_sensor(defs: dg.Definitions, instance, cursor: str | None):
    sensor = defs.resolve_sensor_def("raw_data_changed")
    # As a context manager: the resources it builds are released with it.
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=defs.resources, definitions=defs
    ) as context:
        return sensor.evaluate_tick(context), context.cursor


def _evaluate_schedule(defs: dg.Definitions, instance):
    with dg.build_schedule_context(
        instance=instance, resources=defs.resources, repository_def=defs.get_repository_def()
    ) as context:
        return defs.resolve_schedule_def("weekly_retrain").evaluate_tick(context)


def test_sensor_requests_a_run_on_added_file_and_skips_otherwise(
    data_copy: Path, tmp_path: Path
) -> None:
    defs = build_definitions(data_dir=data_copy, artifacts_dir=tmp_path / "artifacts")
    with dg.instance_for_test() as instance:
        first, cursor = _evaluate_sensor(defs, instance, None)
        # Nothing materialized yet: every dataset is new to the pipeline.
        assert len(first.run_requests) == 1
        assert first.run_requests[0].job_name == "full_pipeline"
        # No champion yet: the sweep's default configuration is retrained.
        assert first.run_requests[0].partition_key == SWEEP.default

        unchanged, cursor = _evaluate_sensor(defs, instance, cursor)
        assert unchanged.run_requests == []
        assert "no raw dataset changed" in unchanged.skip_message

        source = next((data_copy / "synth_navoneel" / "yes").iterdir())
        shutil.copy(source, data_copy / "synth_navoneel" / "yes" / "new_scan.jpg")
        changed, cursor = _evaluate_sensor(defs, instance, cursor)
        assert len(changed.run_requests) == 1
        assert changed.run_requests[0].tags["brain_pipeline/changed_datasets"] == "synth_navoneel"

        # Back to the first state: a change again, under a new run key (not dropped).
        (data_copy / "synth_navoneel" / "yes" / "new_scan.jpg").unlink()
        reverted, cursor = _evaluate_sensor(defs, instance, cursor)
        assert len(reverted.run_requests) == 1
        keys = {first.run_requests[0].run_key, changed.run_requests[0].run_key}
        assert reverted.run_requests[0].run_key not in keys


def test_a_retrain_uses_the_champions_configuration(tmp_path: Path) -> None:
    storage = PipelineStorage(data_dir=str(tmp_path), artifacts_dir=str(tmp_path / "art"))
    assert retrain_configuration(storage) == SWEEP.default
    history = PromotionHistory(tmp_path / "art" / "model_registry")
    history.append(PromotionRecord(None, "compact_96@20261130T1_ab", "promoted", "", "manual"))
    assert retrain_configuration(storage) == "compact_96"
    # A champion whose configuration left the sweep file: back to the default.
    history.append(PromotionRecord(None, "gone@20261130T2_cd", "promoted", "", "manual"))
    assert retrain_configuration(storage) == SWEEP.default


def test_sensor_and_schedule_are_off_by_default(data_copy: Path, tmp_path: Path) -> None:
    defs = build_definitions(data_dir=data_copy, artifacts_dir=tmp_path)
    assert (
        defs.resolve_sensor_def("raw_data_changed").default_status == dg.DefaultSensorStatus.STOPPED
    )
    schedule = defs.resolve_schedule_def("weekly_retrain")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.cron_schedule == "0 3 * * 1"


def test_schedule_skips_when_the_manifest_is_current(data_copy: Path, tmp_path: Path) -> None:
    defs = build_definitions(data_dir=data_copy, artifacts_dir=tmp_path / "artifacts")
    with dg.instance_for_test() as instance:
        assert len(_evaluate_schedule(defs, instance).run_requests) == 1  # never built yet
        keys = [f"{prefix}/{name}" for name in DATASETS for prefix in ("raw", "manifest")]
        defs.resolve_job_def("full_pipeline").execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey.from_user_string(k) for k in [*keys, "image_manifest"]],
        )
        skipped = _evaluate_schedule(defs, instance)
        assert skipped.run_requests == []
        assert "unchanged" in skipped.skip_message
        (data_copy / "synth_alzheimer" / "Image-dataset" / "train" / "MildDemented").joinpath(
            "mildDem_new.jpg"
        ).write_bytes(next((data_copy / "synth_navoneel" / "no").iterdir()).read_bytes())
        assert len(_evaluate_schedule(defs, instance).run_requests) == 1


def _materialized_and_observed(instance, run_id: str) -> tuple[set[str], set[str]]:
    records = instance.get_records_for_run(run_id).records
    events = [record.event_log_entry.dagster_event for record in records]
    keys = lambda kind: {  # noqa: E731
        e.asset_key.to_user_string() for e in events if e is not None and e.event_type_value == kind
    }
    return keys("ASSET_MATERIALIZATION"), keys("ASSET_OBSERVATION")


def test_a_new_dataset_rescans_only_its_own_manifest(data_copy: Path, tmp_path: Path) -> None:
    """Adding a dataset: the sensor's run observes and scans only it, then combines."""
    defs = build_definitions(data_dir=data_copy, artifacts_dir=tmp_path / "artifacts")
    with dg.instance_for_test() as instance:
        first, cursor = _evaluate_sensor(defs, instance, None)
        _run(defs, instance, first.run_requests[0])

        # Without a datasets.toml, every folder of the data directory is a dataset.
        shutil.copytree(data_copy / "synth_navoneel", data_copy / "hospital_b")
        defs = build_definitions(data_dir=data_copy, artifacts_dir=tmp_path / "artifacts")
        added, _ = _evaluate_sensor(defs, instance, cursor)
        request = added.run_requests[0]
        assert request.tags["brain_pipeline/changed_datasets"] == "hospital_b"
        selected = {key.to_user_string() for key in request.asset_selection}
        wanted = {"raw/hospital_b", "manifest/hospital_b", "image_manifest", "trained_model"}
        assert wanted <= selected
        assert not {"manifest/synth_navoneel", "raw/synth_alzheimer"} & selected

        run = _run(defs, instance, request)
        materialized, observed = _materialized_and_observed(instance, run.run_id)
        assert materialized == {"manifest/hospital_b", "image_manifest"}
        assert observed == {"raw/hospital_b"}
        combined = instance.get_latest_materialization_event(dg.AssetKey("image_manifest"))
        n_files = combined.asset_materialization.metadata["n_files"].value
        parts = [
            instance.get_latest_materialization_event(dg.AssetKey(["manifest", name]))
            .asset_materialization.metadata["n_files"]
            .value
            for name in (*DATASETS, "hospital_b")
        ]
        assert n_files == sum(parts)


def _run(defs, instance, request: dg.RunRequest):
    """Execute a run request's selection up to image_manifest (the test does not train)."""
    keys = [
        key
        for key in request.asset_selection
        if key.path[0] in ("raw", "manifest") or key == dg.AssetKey("image_manifest")
    ]
    result = defs.resolve_job_def(request.job_name).execute_in_process(
        instance=instance, asset_selection=keys, tags=request.tags
    )
    assert result.success
    return result
