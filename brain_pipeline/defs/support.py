"""Small helpers the assets share: upstream artifacts, provenance, plots as metadata."""

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from brain_pipeline.core.artifacts import write_figure, write_provenance


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


def upstream_artifact(context: dg.AssetExecutionContext, key: str) -> UpstreamArtifact:
    """The artifact recorded by the latest materialization of `key` (its `path` metadata).

    This is the asset Dagster considers current, not "the newest file in a folder".
    """
    event = context.instance.get_latest_materialization_event(dg.AssetKey(key))
    if event is None or event.asset_materialization is None:
        raise dg.Failure(f"asset {key!r} has never been materialized; materialize it first")
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
        data_version=materialization.tags.get("dagster/data_version"),
    )


def raw_data_versions(context: dg.AssetExecutionContext, keys: list[dg.AssetKey]) -> dict:
    """The observed data version (fingerprint) of each raw dataset."""
    versions = {}
    for key in keys:
        record = context.instance.get_latest_data_version_record(key)
        tags = record.event_log_entry.tags if record else {}
        versions[key.to_user_string()] = (tags or {}).get("dagster/data_version")
    return versions


def record_provenance(
    context: dg.AssetExecutionContext,
    folder: Path,
    *,
    config: dict[str, Any],
    upstream: list[UpstreamArtifact] = (),
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write provenance.json: who made this folder, from what, with which code and config."""
    return write_provenance(
        folder,
        {
            "asset_key": context.asset_key.to_user_string(),
            "run_id": context.run_id,
            "job_name": context.job_name,
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
