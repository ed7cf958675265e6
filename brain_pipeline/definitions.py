"""The code location: the assets, checks, job, sensor, schedule and resources of defs/.

`dagster dev`, `dg dev`, `dg check defs` and the webserver load `defs`. `build_definitions`
is the same assembly for another raw-data root, artifacts root or tracker (the tests and
the CLI use it). The raw sources are the one part that depends on the data: one per dataset
in `datasets.toml`, each with its manifest (`manifest/<dataset>`), and `image_manifest`
combines them.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from brain_pipeline.core.data.sources import load_raw_data_config
from brain_pipeline.core.locations import default_artifacts_dir, default_data_dir
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

DOWNSTREAM_OF_MANIFEST = [
    balanced_index,
    dataset_splits,
    training.trained_model,
    evaluation.model_evaluation,
    explanation.gradcam_gallery,
    serving.ood_guard,
    external.external_evaluation,
    emissions.emissions_record,
    models.leaderboard,
    models.champion_model,
    models.model_card,
]


def build_definitions(
    data_dir: Path | None = None,
    artifacts_dir: Path | None = None,
    carbon: CarbonTracker | None = None,
    reuse_unchanged: bool = True,
    loggers: dict[str, dg.LoggerDefinition] | None = None,
    executor: dg.ExecutorDefinition | None = None,
) -> dg.Definitions:
    """Definitions for one raw-data root (default: $BRAIN_PIPELINE_DATA_DIR or ./data).

    `loggers` replaces Dagster's console logger where a run selects one (the CLI does);
    `executor` replaces Dagster's default executor (`defs` takes it from
    $BRAIN_PIPELINE_EXECUTOR: see defs/executors.py).
    """
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    artifacts_dir = Path(artifacts_dir) if artifacts_dir else default_artifacts_dir()
    raw = load_raw_data_config(data_dir)
    names = [spec.name for spec in raw.datasets]
    sources = raw_dataset_sources(raw)
    parts = [dataset_manifest_asset(name) for name in names]
    manifest = image_manifest_asset(names)
    return dg.Definitions(
        assets=[*sources, *parts, manifest, *DOWNSTREAM_OF_MANIFEST],
        asset_checks=checks.ALL_CHECKS,
        jobs=[automation.full_pipeline],
        sensors=[automation.raw_data_changed],
        schedules=[automation.weekly_retrain],
        resources={
            "storage": PipelineStorage(
                data_dir=str(data_dir),
                artifacts_dir=str(artifacts_dir),
                reuse_unchanged=reuse_unchanged,
            ),
            "carbon": carbon or CarbonTracker(),
        },
        loggers=loggers,
        executor=executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(executor=executors.executor_from_env())
