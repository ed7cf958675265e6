"""The ceremony every asset shares, in one place: `ArtifactStep`.

An asset reads its upstream artifacts, hashes everything its output depends on, reuses an
earlier result made from identical inputs, or computes into a fresh run folder (under the
carbon tracker where it does real work) and returns a `MaterializeResult` stamped with that
hash and beside a provenance record. The helpers below it are the pieces `ArtifactStep` is
built from; checks use `upstream_artifact` directly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from brain_pipeline.core import artifact_names
from brain_pipeline.core.artifacts import write_figure, write_json, write_provenance
from brain_pipeline.core.emissions import StepMeasurement, track_step
from brain_pipeline.defs.resources import CarbonTracker, PipelineStorage


@dataclass(frozen=True)
class UpstreamArtifact:
    """Where an upstream asset's current materialization put its main file."""

    asset_key: str
    path: Path
    run_id: str
    data_version: str | None

    @property
    def folder(self) -> Path:
        return self.path.parent

    def as_record(self) -> dict[str, Any]:
        return {
            "asset_key": self.asset_key,
            "path": str(self.path),
            "run_id": self.run_id,
            "data_version": self.data_version,
        }


def materialization_for_run(
    instance: dg.DagsterInstance, key: dg.AssetKey, run_id: str, partition: str | None = None
) -> dg.EventLogEntry | None:
    """The materialization of `key` (of `partition`, for a partitioned asset) made by this run
    if there is one, else the latest one.

    Preferring this run's own keeps two overlapping runs (say two configs, or a sensor run
    and a manual one) from evaluating or explaining each other's models.
    """
    in_run = [
        entry
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        if entry.asset_materialization
        and entry.asset_materialization.asset_key == key
        and entry.asset_materialization.partition == partition
    ]
    if in_run:
        return in_run[-1]
    if partition is None:
        return instance.get_latest_materialization_event(key)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    return records[0].event_log_entry if records else None


def own_partition(context: dg.AssetExecutionContext) -> str | None:
    """This asset's partition (its training configuration), or None for an unpartitioned
    asset, even inside a partitioned run (where Dagster still reports the run's key)."""
    if context.assets_def.partitions_def is None or not context.has_partition_key:
        return None
    return context.partition_key


def partition_of(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, key: dg.AssetKey
) -> str | None:
    """The partition of `key` this step reads or writes: the run's partition (a training
    configuration) where `key` is partitioned, else None."""
    op_context = context.op_execution_context
    if not op_context.has_partition_key:
        return None
    graph = op_context.job_def.asset_layer.asset_graph
    if not graph.has(key) or not graph.get(key).is_partitioned:
        return None
    return op_context.partition_key


def upstream_artifact(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, key: str
) -> UpstreamArtifact:
    """The artifact recorded by the current materialization of `key` (its `path` metadata).

    This is the asset Dagster considers current (this run's, if it made one), not "the newest
    file in a folder". Assets and asset checks both use it.
    """
    run_id = context.op_execution_context.run_id
    asset_key = dg.AssetKey.from_user_string(key)
    partition = partition_of(context, asset_key)
    event = materialization_for_run(context.instance, asset_key, run_id, partition)
    if event is None or event.asset_materialization is None:
        which = f"{key!r} (partition {partition!r})" if partition else repr(key)
        raise dg.Failure(f"asset {which} has never been materialized; materialize it first")
    materialization = event.asset_materialization
    path_value = materialization.metadata.get("path")
    if path_value is None:
        raise dg.Failure(f"the latest materialization of {key!r} records no `path` metadata")
    path = Path(str(path_value.value))
    if not path.exists():
        raise dg.Failure(
            f"{key!r} points at {path}, which no longer exists; re-materialize {key!r}"
        )
    return UpstreamArtifact(
        asset_key=key,
        path=path,
        run_id=event.run_id,
        data_version=(materialization.tags or {}).get("dagster/data_version"),
    )


def upstream_keys(context: dg.AssetExecutionContext) -> list[str]:
    """The asset's declared deps, in declaration order: the upstream artifacts its step reads.

    (A run of a selection cannot tell them from sources: its job's graph holds every asset
    left out of the selection as an external one. An asset whose dep is a raw source, which
    has no file to read, gives its inputs as `upstream_versions` with `reads_deps=False`.)"""
    (spec,) = (spec for spec in context.assets_def.specs if spec.key == context.asset_key)
    return [dep.asset_key.to_user_string() for dep in spec.deps]


def record_provenance(
    context: dg.AssetExecutionContext,
    folder: Path,
    *,
    config: dict[str, Any],
    upstream: Sequence[UpstreamArtifact] = (),
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write provenance.json: who made this folder, from what, with which code and config."""
    return write_provenance(
        folder,
        {
            "asset_key": context.asset_key.to_user_string(),
            "run_id": context.run_id,
            "job_name": context.job_name,
            "partition": own_partition(context),
            "code_version": context.assets_def.code_versions_by_key.get(context.asset_key),
            "config": config,
            "upstream": [u.as_record() for u in upstream],
            **(extra or {}),
        },
    )


def figure_metadata(folder: Path, file_name: str, figure: Any) -> dg.MetadataValue:
    """Save a figure as PNG beside the artifact and embed it in the UI as markdown."""
    png = write_figure(folder / file_name, figure)
    encoded = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"![{file_name}](data:image/png;base64,{encoded})")


def markdown_table(frame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown() if hasattr(frame, "to_markdown") else str(frame))


def input_signature(
    context: dg.AssetExecutionContext,
    *,
    config: dict[str, Any],
    upstream: Sequence[UpstreamArtifact] = (),
    upstream_versions: dict[str, str | None] | None = None,
) -> str:
    """A hash of everything an asset's output depends on: code version, config, inputs.

    It doubles as the asset's data version, so a recomputation from the same inputs keeps
    the same version and downstream assets are not marked stale by it.
    """
    payload = {
        "asset": context.asset_key.to_user_string(),
        "partition": own_partition(context),
        "code_version": context.assets_def.code_versions_by_key.get(context.asset_key),
        "config": config,
        "upstream": {u.asset_key: u.data_version for u in upstream} | (upstream_versions or {}),
    }
    encoded = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:20]


@dataclass(frozen=True)
class PreviousResult:
    """This asset's current materialization, whose artifact file still exists."""

    run_id: str
    metadata: dict[str, Any]
    path: Path
    data_version: str | None


def previous_result(context: dg.AssetExecutionContext) -> PreviousResult | None:
    """The latest materialization of this asset (of this partition, if it is partitioned)."""
    if partition := own_partition(context):
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[partition]),
            limit=1,
        ).records
        event = records[0].event_log_entry if records else None
    else:
        event = context.instance.get_latest_materialization_event(context.asset_key)
    if event is None or event.asset_materialization is None:
        return None
    metadata = dict(event.asset_materialization.metadata)
    path = Path(str(metadata["path"].value)) if "path" in metadata else None
    if path is None or not path.exists():
        return None
    data_version = (event.asset_materialization.tags or {}).get("dagster/data_version")
    return PreviousResult(event.run_id, metadata, path, data_version)


def reuse_if_unchanged(
    context: dg.AssetExecutionContext, signature: str, enabled: bool
) -> dg.MaterializeResult | None:
    """The previous result, if it was computed from identical inputs and its file still exists."""
    previous = previous_result(context) if enabled else None
    if previous is None or "input_signature" not in previous.metadata:
        return None
    if previous.metadata["input_signature"].value != signature:
        return None
    context.log.info(
        f"inputs, config and code unchanged since run {previous.run_id}: reusing {previous.path}"
    )
    metadata = previous.metadata
    # After several hits in a row, still name the run that actually computed the artifact.
    computed_by = (
        metadata["reused_from_run"].value if "reused_from_run" in metadata else previous.run_id
    )
    metadata.update(
        cache_hit=True,
        reused_from_run=computed_by,
        reused_artifact=dg.MetadataValue.path(str(previous.path)),
    )
    # The data version is the one the computed result reported (its content version, where
    # the asset has one), so a reuse never marks downstream assets stale.
    version = previous.data_version or signature
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(version))


def computed(
    signature: str, metadata: dict[str, Any], content_version: str | None = None
) -> dg.MaterializeResult:
    """A freshly computed result, stamped with its input signature.

    Its data version is `content_version` where the asset has one (a hash of what downstream
    steps read), else the input signature.
    """
    extra = {"content_version": content_version} if content_version else {}
    return dg.MaterializeResult(
        metadata={**metadata, **extra, "input_signature": signature, "cache_hit": False},
        data_version=dg.DataVersion(content_version or signature),
    )


def emissions_metadata(record: dict) -> dict[str, Any]:
    """The energy figures of a step's emissions record, or why there are none."""
    if not record.get("measured"):
        return {"energy_kwh": "not measured", "energy_note": record.get("not_measured_reason", "")}
    return {
        "energy_kwh": dg.MetadataValue.float(record["energy_kwh"]),
        "emissions_kg_co2eq": dg.MetadataValue.float(record["emissions_kg"]),
        "power_measurement": record["measurement_mode"],
    }


def finite_or_text(value: Any) -> float | str:
    """A float for the UI, or "not measured" where there is no finite figure."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "not measured"
    return number if math.isfinite(number) else "not measured"


def progress_log(context: dg.AssetExecutionContext, verb: str = "preprocessed"):
    """A `progress(done, total)` callback that writes to the run's log."""
    return lambda done, total: context.log.info(f"{verb} {done}/{total} images")


class ArtifactStep:
    """One materialization of a memoised asset that writes files under the artifacts root.

    ``step = ArtifactStep(context, storage, config=...)`` reads the artifacts of the assets
    the asset declares in `deps` (`step.upstream["balanced_index"]`: each upstream is named
    once, in the decorator) and hashes the inputs (`step.signature`). An asset whose inputs
    are not upstream artifacts (a raw folder's fingerprint, the set of all evaluations) gives
    them as `upstream_versions` and says `reads_deps=False`.
    `step.reused()` is the earlier result when nothing changed; `step.folder` is this run's
    fresh folder; `with step.tracked():` measures energy;
    `step.result(metadata)` writes provenance and returns the stamped result.
    """

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        storage: PipelineStorage,
        *,
        config: dict[str, Any],
        upstream_versions: dict[str, str | None] | None = None,
        carbon: CarbonTracker | None = None,
        reads_deps: bool = True,
    ) -> None:
        self.context = context
        self.storage = storage
        self.config = config
        self.name = context.asset_key.to_user_string()
        keys = upstream_keys(context) if reads_deps else []
        self.upstream = {key: upstream_artifact(context, key) for key in keys}
        self.signature = input_signature(
            context,
            config=config,
            upstream=list(self.upstream.values()),
            upstream_versions=upstream_versions,
        )
        self._carbon = carbon
        self._folder: Path | None = None
        self._energy: dict | None = None

    def reused(self) -> dg.MaterializeResult | None:
        """The earlier result if it was computed from identical inputs and its file exists."""
        return reuse_if_unchanged(self.context, self.signature, self.storage.reuse_unchanged)

    @property
    def folder(self) -> Path:
        """This run's folder: <asset>/[<partition>/]<time>_<run>."""
        if self._folder is None:
            partition = own_partition(self.context)
            name = f"{self.name}/{partition}" if partition else self.name
            self._folder = self.storage.run_dir(name, self.context.run_id)
        return self._folder

    @contextmanager
    def tracked(self, model_version: str | None = None) -> Iterator[StepMeasurement]:
        """Measure the block's energy; the record lands in emissions.json and the metadata."""
        if self._carbon is None:
            raise ValueError(f"{self.name}: ArtifactStep needs `carbon` to track energy")
        with track_step(
            self._carbon.settings(),
            asset_key=self.name,
            run_id=self.context.run_id,
            model_version=model_version,
        ) as measurement:
            yield measurement
        self._energy = measurement.record

    def figure(self, file_name: str, figure: Any) -> dg.MetadataValue:
        return figure_metadata(self.folder, file_name, figure)

    def result(
        self,
        metadata: dict[str, Any],
        *,
        more_upstream: Sequence[UpstreamArtifact] = (),
        provenance: dict[str, Any] | None = None,
        content_version: str | None = None,
    ) -> dg.MaterializeResult:
        """Write emissions.json and provenance.json; return the result stamped with the
        input signature. Its data version is `content_version` if given (see `computed`)."""
        if self._energy is not None:
            write_json(self.folder / artifact_names.EMISSIONS, self._energy)
            metadata = {**metadata, **emissions_metadata(self._energy)}
        record_provenance(
            self.context,
            self.folder,
            config=self.config,
            upstream=[*self.upstream.values(), *more_upstream],
            extra=provenance,
        )
        return computed(self.signature, metadata, content_version)
