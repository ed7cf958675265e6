"""Resources: where raw data and artifacts live, and how energy is measured."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from brain_pipeline.core.data.sources import RawDataConfig, load_raw_data_config
from brain_pipeline.core.emissions import TrackerSettings
from brain_pipeline.core.model.sweep import Sweep, load_sweep


class PipelineStorage(dg.ConfigurableResource):
    """The pipeline's settings, carried once: the raw-data root (read only) and its datasets,
    the artifacts root (every file the assets write), and the sweep file (the training
    configurations)."""

    data_dir: str
    artifacts_dir: str
    sweep_file: str | None = None  # None: $BRAIN_PIPELINE_SWEEP_FILE, else sweep.toml
    # Reuse an asset's previous artifact when its code version, config and inputs are
    # unchanged; set to false to force every asset to recompute.
    reuse_unchanged: bool = True

    # datasets.toml and the sweep file, parsed once per run (Dagster builds the resource once
    # per run and process), however many steps ask for them.
    _raw: RawDataConfig | None = PrivateAttr(default=None)
    _sweep: Sweep | None = PrivateAttr(default=None)

    def raw_data(self) -> RawDataConfig:
        """The raw-data root's datasets (`datasets.toml`), parsed on first use."""
        if self._raw is None:
            self._raw = load_raw_data_config(Path(self.data_dir))
        return self._raw

    def sweep(self) -> Sweep:
        """The training configurations (the sweep file), parsed on first use."""
        if self._sweep is None:
            self._sweep = load_sweep(Path(self.sweep_file) if self.sweep_file else None)
        return self._sweep

    def run_dir(self, asset_name: str, run_id: str) -> Path:
        """A fresh folder per asset and run, so concurrent runs never overwrite each other."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        folder = Path(self.artifacts_dir) / asset_name / f"{stamp}_{run_id[:8]}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def shared_dir(self, name: str) -> Path:
        folder = Path(self.artifacts_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder


class CarbonTracker(dg.ConfigurableResource):
    """codecarbon in offline mode: never the network; the grid intensity is by country.

    The default country (USA) is codecarbon's documented example; set the ISO code of the
    country where the computer runs (e.g. FRA, DEU, GBR) for a meaningful CO2 figure.
    """

    enabled: bool = True
    country_iso_code: str = "USA"
    region: str | None = None
    pue: float = 1.0
    measure_power_secs: float = 1.0
    tracking_mode: str = "process"

    def settings(self) -> TrackerSettings:
        return TrackerSettings(
            **{field.name: getattr(self, field.name) for field in fields(TrackerSettings)}
        )
