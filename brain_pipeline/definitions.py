"""The one place that wires assets, checks, resources and jobs together."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from brain_pipeline.core.data.sources import load_raw_data_config
from brain_pipeline.core.locations import default_artifacts_dir, default_data_dir
from brain_pipeline.defs.assets import build_assets, raw_dataset_asset
from brain_pipeline.defs.automation import build_automation
from brain_pipeline.defs.checks import ALL_CHECKS
from brain_pipeline.defs.resources import CarbonTracker, PipelineStorage

FULL_PIPELINE_JOB = "full_pipeline"


def build_definitions(
    data_dir: Path | None = None,
    artifacts_dir: Path | None = None,
    carbon: CarbonTracker | None = None,
    reuse_unchanged: bool = True,
) -> dg.Definitions:
    """Definitions for one raw-data root (default: $BRAIN_PIPELINE_DATA_DIR or ./data)."""
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    artifacts_dir = Path(artifacts_dir) if artifacts_dir else default_artifacts_dir()
    raw = load_raw_data_config(data_dir)
    raw_assets = [raw_dataset_asset(spec) for spec in raw.datasets]
    pipeline_assets = build_assets([asset.key for asset in raw_assets])
    full_pipeline = dg.define_asset_job(
        FULL_PIPELINE_JOB,
        selection=dg.AssetSelection.all(include_sources=True),
        description="Observe every raw dataset, then materialize the whole chain.",
    )
    sensor, schedule = build_automation(raw, FULL_PIPELINE_JOB)
    return dg.Definitions(
        assets=[*raw_assets, *pipeline_assets],
        asset_checks=ALL_CHECKS,
        jobs=[full_pipeline],
        sensors=[sensor],
        schedules=[schedule],
        resources={
            "storage": PipelineStorage(
                data_dir=str(data_dir),
                artifacts_dir=str(artifacts_dir),
                reuse_unchanged=reuse_unchanged,
            ),
            "carbon": carbon or CarbonTracker(),
        },
    )


defs = build_definitions()
