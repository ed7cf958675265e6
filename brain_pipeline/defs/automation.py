"""The full_pipeline job, and retraining when the raw data changes: a sensor and a weekly
schedule, both off by default.

Both compare each raw dataset's fingerprint (the same one its observable source reports as
data version) with what was last seen, and request a run only when something changed. The
run observes and re-scans only the changed datasets (`raw/<name>`, `manifest/<name>`) and
materializes everything downstream of `image_manifest`; memoised assets whose inputs did not
change reuse their artifacts. It retrains the serving champion's configuration (the sweep's
default before there is a champion), and champion_model then decides whether the retrained
model replaces the champion.
"""

import hashlib
import json
import os

import dagster as dg

from brain_pipeline.core.data.sources import dataset_fingerprints
from brain_pipeline.defs.models import promotion_history
from brain_pipeline.defs.resources import PipelineStorage

DEFAULT_RETRAIN_CRON = "0 3 * * 1"  # Mondays 03:00
RETRAIN_CRON_ENV = "BRAIN_PIPELINE_RETRAIN_CRON"


def changed_datasets(previous: dict[str, str], current: dict[str, str]) -> list[str]:
    """Datasets added, removed or with a different fingerprint."""
    names = set(previous) | set(current)
    return sorted(name for name in names if previous.get(name) != current.get(name))


def _fingerprints_of_last_manifests(instance: dg.DagsterInstance, names) -> dict[str, str]:
    """The raw data version each dataset's current manifest (`manifest/<name>`) was built from."""
    fingerprints = {}
    for name in names:
        event = instance.get_latest_materialization_event(dg.AssetKey(["manifest", name]))
        if event is not None and event.asset_materialization is not None:
            tag = f"dagster/input_data_version/raw/{name}"
            if tag in event.asset_materialization.tags:
                fingerprints[name] = event.asset_materialization.tags[tag]
    return fingerprints


def changed_selection(asset_graph, changed: list[str]) -> list[dg.AssetKey]:
    """What a change to `changed` datasets requires: observing them, re-scanning their
    manifests, and everything downstream of the combined manifest. The manifests of the
    other datasets are not in it."""
    known = asset_graph.get_all_asset_keys()
    parts = [
        key
        for name in changed
        for key in (dg.AssetKey(["raw", name]), dg.AssetKey(["manifest", name]))
        if key in known
    ]
    downstream = dg.AssetSelection.assets("image_manifest").downstream().resolve(asset_graph)
    return [*parts, *sorted(downstream)]


def retrain_configuration(storage: PipelineStorage) -> str:
    """The champion's configuration (partition), else the sweep's default."""
    champion = promotion_history(storage).champion()
    configuration = (champion or {}).get("serving_version", "").partition("@")[0]
    sweep = storage.sweep()
    return configuration if configuration in sweep.configurations else sweep.default


def _run_request(
    context,
    job_name: str,
    changed: list[str],
    previous: dict[str, str],
    current: dict[str, str],
    configuration: str,
) -> dg.RunRequest:
    # Keyed by the transition, not the state: going back to an earlier state (a file added,
    # then deleted) is a new change and must not be dropped as a duplicate run key.
    transition = json.dumps([previous, current], sort_keys=True).encode()
    return dg.RunRequest(
        run_key=hashlib.sha256(transition).hexdigest()[:24],
        job_name=job_name,
        asset_selection=changed_selection(context.repository_def.asset_graph, changed),
        partition_key=configuration,
        tags={"brain_pipeline/changed_datasets": ",".join(changed)},
    )


full_pipeline = dg.define_asset_job(
    "full_pipeline",
    selection=dg.AssetSelection.all(include_sources=True),
    description="Observe every raw dataset, then materialize the whole chain for one training "
    "configuration (the partition), and decide whether its model becomes the champion.",
)


@dg.sensor(
    job=full_pipeline,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Runs the pipeline when images are added, removed or changed.",
)
def raw_data_changed(context: dg.SensorEvaluationContext, storage: PipelineStorage):
    current = dataset_fingerprints(storage.raw_data())
    previous = json.loads(context.cursor) if context.cursor else None
    if previous is None:
        # First evaluation: compare with what the current model was built from.
        previous = _fingerprints_of_last_manifests(context.instance, current)
    changed = changed_datasets(previous, current)
    context.update_cursor(json.dumps(current, sort_keys=True))
    if not changed:
        return dg.SkipReason(f"no raw dataset changed ({len(current)} checked)")
    context.log.info(f"changed datasets: {', '.join(changed)}")
    configuration = retrain_configuration(storage)
    return _run_request(context, full_pipeline.name, changed, previous, current, configuration)


@dg.schedule(
    job=full_pipeline,
    cron_schedule=os.environ.get(RETRAIN_CRON_ENV, DEFAULT_RETRAIN_CRON),
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Weekly retraining; skipped when the raw data did not change.",
)
def weekly_retrain(context: dg.ScheduleEvaluationContext, storage: PipelineStorage):
    current = dataset_fingerprints(storage.raw_data())
    previous = _fingerprints_of_last_manifests(context.instance, current)
    changed = changed_datasets(previous, current)
    if not changed:
        return dg.SkipReason("the raw data is unchanged since the current manifests")
    configuration = retrain_configuration(storage)
    return _run_request(context, full_pipeline.name, changed, previous, current, configuration)
