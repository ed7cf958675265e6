"""Energy records: complete when measured, explicit when not, accumulated across runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from brain_pipeline.core import emissions
from brain_pipeline.core.emissions import (
    RECORD_COLUMNS,
    TrackerSettings,
    append_history,
    efficiency_by_model_version,
    track_step,
)


def _busy(seconds: float = 0.3) -> None:
    import time

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1000))


def test_a_tracked_step_produces_a_complete_record() -> None:
    settings = TrackerSettings(country_iso_code="FRA", measure_power_secs=0.5)
    with track_step(settings, asset_key="trained_model", run_id="r1", model_version="v1") as m:
        _busy()
    record = m.record
    assert set(record) == set(RECORD_COLUMNS)
    assert record["measured"] is True, record["not_measured_reason"]
    assert record["energy_kwh"] > 0 and record["emissions_kg"] > 0
    assert record["duration_s"] >= 0.3
    assert record["country_iso_code"] == "FRA"
    assert record["measurement_mode"] not in ("", "not measured")


def test_failure_to_start_gives_an_explicit_not_measured_row(monkeypatch) -> None:
    def broken(settings):
        raise RuntimeError("no power source")

    monkeypatch.setattr(emissions, "_start_tracker", broken)
    with track_step(TrackerSettings(), asset_key="image_manifest", run_id="r2") as m:
        pass
    assert m.record["measured"] is False
    assert m.record["energy_kwh"] is None
    assert m.record["measurement_mode"] == "not measured"
    assert "no power source" in m.record["not_measured_reason"]


def test_errors_inside_the_step_still_propagate() -> None:
    with (
        pytest.raises(ZeroDivisionError),
        track_step(TrackerSettings(enabled=False), asset_key="a", run_id="r"),
    ):
        raise ZeroDivisionError("inside the tracked step")


def _record(asset: str, run: str, version: str, kwh: float, started: str) -> dict:
    base = {column: None for column in RECORD_COLUMNS}
    base.update(
        asset_key=asset,
        run_id=run,
        model_version=version,
        energy_kwh=kwh,
        emissions_kg=kwh * 0.5,
        duration_s=1.0,
        started_at=started,
        measured=True,
    )
    return base


def test_history_accumulates_across_runs_without_double_counting(tmp_path: Path) -> None:
    path = tmp_path / "steps.parquet"
    append_history(path, [_record("trained_model", "r1", "v1", 0.01, "2026-01-01")])
    append_history(path, [_record("trained_model", "r1", "v1", 0.01, "2026-01-01")])
    history = append_history(path, [_record("trained_model", "r2", "v2", 0.03, "2026-01-02")])
    assert list(history["run_id"]) == ["r1", "r2"]
    metrics = pd.DataFrame(
        {
            "model_version": ["v1", "v2"],
            "trained_at": ["1", "2"],
            "accuracy": [0.6, 0.7],
            "f1_macro": [0.5, 0.65],
        }
    )
    table = efficiency_by_model_version(history, metrics)
    assert table["cumulative_kwh"].tolist() == pytest.approx([0.01, 0.04])
    # 0.15 macro-F1 gained for 0.015 kg = 15 g of CO2
    assert table["gain_per_gram_co2"].iloc[1] == pytest.approx(0.01)
    assert table["accuracy_per_kwh"].iloc[0] == pytest.approx(60.0)


def _write_versions(folder: str, writer: int, count: int) -> None:
    """One writer process: `count` model versions, each with its own record."""
    for i in range(count):
        version = f"2026010{writer}T0000{i:02d}_w{writer}"
        metrics = {"model_version": version, "accuracy": 0.5 + i / 100, "f1_macro": 0.5}
        emissions.append_model_version(Path(folder) / "model_versions.parquet", metrics)
        emissions.append_history(
            Path(folder) / "steps.parquet",
            [_record("trained_model", f"run-{writer}-{i}", version, 0.01, version[:15])],
        )


def test_two_concurrent_writers_lose_no_model_version_or_step(tmp_path: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_versions, args=(str(tmp_path), w, 15)) for w in (1, 2)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
        assert process.exitcode == 0
    versions = pd.read_parquet(tmp_path / "model_versions.parquet")
    steps = pd.read_parquet(tmp_path / "steps.parquet")
    assert len(versions) == 30 and versions["model_version"].is_unique
    assert len(steps) == 30 and set(steps["model_version"]) == set(versions["model_version"])


def test_a_model_version_recorded_again_replaces_its_row(tmp_path: Path) -> None:
    path = tmp_path / "model_versions.parquet"
    emissions.append_model_version(
        path, {"model_version": "20260101T000000_a", "accuracy": 0.5, "f1_macro": 0.4}
    )
    table = emissions.append_model_version(
        path, {"model_version": "20260101T000000_a", "accuracy": 0.6, "f1_macro": 0.5}
    )
    assert table.to_dict("records") == [
        {
            "model_version": "20260101T000000_a",
            "trained_at": "20260101T000000",
            "accuracy": 0.6,
            "f1_macro": 0.5,
        }
    ]
