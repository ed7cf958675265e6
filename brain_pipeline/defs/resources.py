"""Resources: where raw data and artifacts live, and how energy is measured."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from brain_pipeline.core.data.sources import RawDataConfig, load_raw_data_config
from brain_pipeline.core.emissions import TrackerSettings


class PipelineStorage(dg.ConfigurableResource):
    """The raw-data root (read only) and the artifacts root (every file the assets write)."""

    data_dir: str
    artifacts_dir: str
    # Reuse an asset's previous artifact when its code version, config and inputs are
    # unchanged; set to false to force every asset to recompute.
    reuse_unchanged: bool = True

    def raw_data(self) -> RawDataConfig:
        return load_raw_data_config(Path(self.data_dir))

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
            enabled=self.enabled,
            country_iso_code=self.country_iso_code,
            region=self.region,
            pue=self.pue,
            measure_power_secs=self.measure_power_secs,
            tracking_mode=self.tracking_mode,
        )
