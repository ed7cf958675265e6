"""Energy and carbon of a compute step, measured with codecarbon, offline.

codecarbon's OfflineEmissionsTracker never touches the network: the carbon intensity comes
from its bundled per-country table. When it cannot measure (not installed, fails to start,
no power source), the record says "not measured" and why, instead of reporting a zero.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from brain_pipeline.core.artifacts import package_versions, write_parquet

RECORD_COLUMNS = [
    "asset_key",
    "run_id",
    "model_version",
    "started_at",
    "ended_at",
    "duration_s",
    "energy_kwh",
    "cpu_energy_kwh",
    "gpu_energy_kwh",
    "ram_energy_kwh",
    "emissions_kg",
    "measurement_mode",
    "tracking_mode",
    "measured",
    "not_measured_reason",
    "cpu_model",
    "gpu_model",
    "country_iso_code",
    "pue",
    "codecarbon_version",
]

# codecarbon's CPU modes, in words a reader understands.
_MODE_NAMES = {
    "intel_rapl": "RAPL (measured)",
    "intel_power_gadget": "Intel Power Gadget (measured)",
    "powermetrics": "powermetrics (measured)",
    "cpu_load": "TDP estimate scaled by CPU load",
    "tdp": "TDP estimate",
    "constant": "constant power assumption",
}


@dataclass(frozen=True)
class TrackerSettings:
    enabled: bool = True
    country_iso_code: str = "USA"
    region: str | None = None
    pue: float = 1.0
    measure_power_secs: float = 1.0
    # "process": only this process's share of CPU and RAM, so steps that run at the same time
    # (Dagster's multiprocess executor) do not each count the other's power.
    tracking_mode: str = "process"


@dataclass
class StepMeasurement:
    """Filled in when the tracked block ends; `record` then holds one RECORD_COLUMNS row."""

    asset_key: str
    run_id: str
    record: dict[str, Any] = field(default_factory=dict)


def _start_tracker(settings: TrackerSettings):
    from codecarbon import OfflineEmissionsTracker

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    options: dict[str, Any] = {
        "country_iso_code": settings.country_iso_code,
        "measure_power_secs": settings.measure_power_secs,
        "save_to_file": False,
        "log_level": "error",
        "pue": settings.pue,
        "tracking_mode": settings.tracking_mode,
        "project_name": "brain_pipeline",
    }
    if settings.region:
        options["region"] = settings.region
    tracker = OfflineEmissionsTracker(**options)
    tracker.start()
    return tracker


def _measurement_mode(tracker) -> str:
    modes = [getattr(h, "_mode", None) for h in getattr(tracker, "_hardware", [])]
    names = [_MODE_NAMES.get(m, str(m)) for m in modes if m]
    return "; ".join(dict.fromkeys(names)) or "unknown"


@contextmanager
def track_step(
    settings: TrackerSettings, *, asset_key: str, run_id: str, model_version: str | None = None
) -> Iterator[StepMeasurement]:
    """Measure the energy of the block; the asset's own errors still propagate."""
    measurement = StepMeasurement(asset_key=asset_key, run_id=run_id)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    tracker, reason = None, ""
    if not settings.enabled:
        reason = "tracking disabled in the carbon tracker settings"
    else:
        try:
            tracker = _start_tracker(settings)
        except Exception as exc:  # codecarbon failing must never fail the asset
            reason = f"codecarbon could not start: {type(exc).__name__}: {exc}"
    try:
        yield measurement
    finally:
        data, mode = None, "not measured"
        if tracker is not None:
            try:
                tracker.stop()
                data = tracker.final_emissions_data
                mode = _measurement_mode(tracker)
            except Exception as exc:
                reason = f"codecarbon failed while stopping: {type(exc).__name__}: {exc}"
        measurement.record = _record(
            measurement,
            settings,
            model_version,
            started_at,
            time.perf_counter() - started,
            data,
            mode,
            reason,
        )


def _record(measurement, settings, model_version, started_at, seconds, data, mode, reason):
    measured = data is not None
    return {
        "asset_key": measurement.asset_key,
        "run_id": measurement.run_id,
        "model_version": model_version,
        "started_at": started_at.isoformat(),
        "ended_at": datetime.now(UTC).isoformat(),
        "duration_s": float(seconds),
        "energy_kwh": float(data.energy_consumed) if measured else None,
        "cpu_energy_kwh": float(data.cpu_energy) if measured else None,
        "gpu_energy_kwh": float(data.gpu_energy) if measured else None,
        "ram_energy_kwh": float(data.ram_energy) if measured else None,
        "emissions_kg": float(data.emissions) if measured else None,
        "measurement_mode": mode,
        "tracking_mode": settings.tracking_mode,
        "measured": measured,
        "not_measured_reason": "" if measured else reason,
        "cpu_model": data.cpu_model if measured else None,
        "gpu_model": (data.gpu_model or None) if measured else None,
        "country_iso_code": settings.country_iso_code,
        "pue": settings.pue,
        "codecarbon_version": (
            data.codecarbon_version if measured else package_versions()["codecarbon"]
        ),
    }


@contextmanager
def history_lock(history_dir: Path) -> Iterator[None]:
    """One exclusive lock for every file of an emissions history folder.

    The step history and the model-version table are read, extended and rewritten by
    concurrent runs; without the lock, two writers both read the old file and the second
    rename drops the first one's rows.
    """
    history_dir = Path(history_dir)
    history_dir.mkdir(parents=True, exist_ok=True)
    with open(history_dir / ".history.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def append_history(history_path: Path, records: list[dict]) -> pd.DataFrame:
    """Add records to the parquet history (one row per asset and run), under the folder's lock.

    Re-adding a record with the same asset_key and run_id replaces it, so collecting the same
    steps twice does not double-count their energy.
    """
    history_path = Path(history_path)
    with history_lock(history_path.parent):
        previous = (
            pd.read_parquet(history_path)
            if history_path.exists()
            else pd.DataFrame(columns=RECORD_COLUMNS)
        )
        incoming = pd.DataFrame(records, columns=RECORD_COLUMNS)
        frames = [f for f in (previous, incoming) if not f.empty]
        combined = pd.concat(frames, ignore_index=True) if frames else incoming
        combined = combined.drop_duplicates(["asset_key", "run_id"], keep="last")
        combined = combined.sort_values("started_at").reset_index(drop=True)
        write_parquet(history_path, combined)
    return combined


MODEL_VERSION_COLUMNS = ["model_version", "trained_at", "accuracy", "f1_macro"]


def append_model_version(versions_path: Path, metrics: dict) -> pd.DataFrame:
    """Add (or replace) one model version's test figures, under the folder's lock.

    `metrics` is model_evaluation's metrics.json; a model version's name starts with the UTC
    time it was trained (`20260101T120000_<run>`), which orders the table.
    """
    versions_path = Path(versions_path)
    row = pd.DataFrame(
        [
            {
                "model_version": metrics["model_version"],
                "trained_at": metrics["model_version"].split("_")[0],
                "accuracy": metrics["accuracy"],
                "f1_macro": metrics["f1_macro"],
            }
        ],
        columns=MODEL_VERSION_COLUMNS,
    )
    with history_lock(versions_path.parent):
        previous = pd.read_parquet(versions_path) if versions_path.exists() else row.iloc[0:0]
        frames = [f for f in (previous, row) if not f.empty]
        combined = pd.concat(frames, ignore_index=True).drop_duplicates(
            "model_version", keep="last"
        )
        write_parquet(versions_path, combined.reset_index(drop=True))
    return combined.reset_index(drop=True)


def efficiency_by_model_version(history: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Per model version: its energy and CO2, the running totals, and the marginal gain.

    `metrics` has one row per model version with `model_version`, `trained_at`, `accuracy`,
    `f1_macro`. The energy of a version is that of every step recorded under it (training,
    evaluation, explanation). `gain_per_gram_co2` is the change in macro-F1 from the previous
    version divided by the grams of CO2 this version cost: how much quality the extra carbon
    bought.
    """
    tagged = history.dropna(subset=["model_version"])
    per_version = (
        tagged.groupby("model_version")[["energy_kwh", "emissions_kg", "duration_s"]]
        .sum(min_count=1)
        .reset_index()
    )
    table = metrics.merge(per_version, on="model_version", how="left")
    table = table.sort_values("trained_at").reset_index(drop=True)
    table["cumulative_kwh"] = table["energy_kwh"].fillna(0).cumsum()
    table["cumulative_kg_co2"] = table["emissions_kg"].fillna(0).cumsum()
    table["accuracy_per_kwh"] = table["accuracy"] / table["energy_kwh"]
    grams = table["emissions_kg"] * 1000.0
    table["gain_per_gram_co2"] = table["f1_macro"].diff() / grams
    return table
