"""The code location: the assets, checks, job, sensor, schedule and resources of defs/.

`dagster dev`, `dg dev`, `dg check defs` and the webserver load `defs`. `build_definitions`
is the same assembly for another raw-data root, artifacts root, sweep file or tracker (the
tests and the CLI use it). Two parts depend on those settings: the raw sources, one per
dataset in `datasets.toml`, each with its manifest (`manifest/<dataset>`), which
`image_manifest` combines; and the partitions of the per-model assets, one per training
configuration of the sweep file.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from brain_pipeline.core.locations import default_artifacts_dir, default_data_dir
from brain_pipeline.core.model.sweep import Sweep, default_sweep_file
from brain_pipeline.defs import (
    automation,
    checks,
    emissions,
    evaluation,
    executors,
    explanation,
    external,
    models,
    serving,
    training,
)
from brain_pipeline.defs.ingestion import (
    balanced_index,
    dataset_manifest_asset,
    dataset_splits,
    image_manifest_asset,
)
from brain_pipeline.defs.raw import raw_dataset_sources
from brain_pipeline.defs.resources import CarbonTracker, PipelineStorage

FULL_PIPELINE_JOB = automation.full_pipeline.name

# The assets that exist once per model: one partition per configuration of the sweep file.
PER_MODEL = [
    training.trained_model,
    evaluation.model_evaluation,
    explanation.gradcam_gallery,
    serving.ood_guard,
    external.external_evaluation,
    emissions.emissions_record,
]
ACROSS_MODELS = [models.leaderboard, models.champion_model, models.model_card]


def partitioned_by_configuration(assets, sweep: Sweep) -> list[dg.AssetsDefinition]:
    """`assets`, partitioned by the sweep's training configurations."""
    partitions = dg.StaticPartitionsDefinition(sweep.names)
    return [
        asset.map_asset_specs(lambda spec: spec.replace_attributes(partitions_def=partitions))
        for asset in assets
    ]


def build_definitions(
    data_dir: Path | None = None,
    artifacts_dir: Path | None = None,
    sweep_file: Path | None = None,
    carbon: CarbonTracker | None = None,
    reuse_unchanged: bool = True,
    loggers: dict[str, dg.LoggerDefinition] | None = None,
    executor: dg.ExecutorDefinition | None = None,
) -> dg.Definitions:
    """Definitions for one raw-data root (default: $BRAIN_PIPELINE_DATA_DIR or ./data), one
    artifacts root and one sweep file (default: $BRAIN_PIPELINE_SWEEP_FILE or sweep.toml).

    `storage` carries these settings to every step, parsing datasets.toml and the sweep once
    per run (here too, for the sources and the partitions). `loggers` replaces Dagster's
    console logger where a run selects one (the CLI does); `executor` replaces Dagster's
    default executor (`defs` takes it from $BRAIN_PIPELINE_EXECUTOR: see defs/executors.py).
    """
    storage = PipelineStorage(
        data_dir=str(Path(data_dir) if data_dir else default_data_dir()),
        artifacts_dir=str(Path(artifacts_dir) if artifacts_dir else default_artifacts_dir()),
        sweep_file=str(Path(sweep_file) if sweep_file else default_sweep_file()),
        reuse_unchanged=reuse_unchanged,
    )
    raw, sweep = storage.raw_data(), storage.sweep()
    names = [spec.name for spec in raw.datasets]
    return dg.Definitions(
        assets=[
            *raw_dataset_sources(raw),
            *(dataset_manifest_asset(name) for name in names),
            image_manifest_asset(names),
            balanced_index,
            dataset_splits,
            *partitioned_by_configuration(PER_MODEL, sweep),
            *ACROSS_MODELS,
        ],
        asset_checks=checks.ALL_CHECKS,
        jobs=[automation.full_pipeline],
        sensors=[automation.raw_data_changed],
        schedules=[automation.weekly_retrain],
        resources={"storage": storage, "carbon": carbon or CarbonTracker()},
        loggers=loggers,
        executor=executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(executor=executors.executor_from_env())
