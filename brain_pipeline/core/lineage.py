"""The lineage of an artifact: from any file the pipeline wrote back to the raw image bytes.

Every artifact folder holds a `provenance.json` naming its upstream artifacts, so the chain
is followed file by file; at the data end, the split / index / manifest tables name the raw
images (dataset, path, sha256) that fed the artifact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from brain_pipeline.core import artifact_names
from brain_pipeline.core.artifacts import find_provenance, read_json

MAX_IMAGES_IN_TEXT = 5


@dataclass
class LineageNode:
    asset_key: str
    run_id: str
    code_version: str | None
    artifact: str
    config: dict[str, Any]
    upstream: list[LineageNode] = field(default_factory=list)
    raw_data_versions: dict[str, str | None] = field(default_factory=dict)
    images: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "asset_key": self.asset_key,
            "run_id": self.run_id,
            "code_version": self.code_version,
            "artifact": self.artifact,
            "config": self.config,
            "raw_data_versions": self.raw_data_versions,
            "images": self.images,
            "upstream": [node.as_dict() for node in self.upstream],
        }


def trace(path: Path) -> LineageNode:
    """Build the lineage tree of an artifact file (or folder)."""
    provenance_path = find_provenance(Path(path))
    if provenance_path is None:
        raise FileNotFoundError(
            f"{path} has no provenance.json in its folder or above; is it a pipeline artifact?"
        )
    return _node(provenance_path, Path(path).resolve())


def provenance_chain(path: Path) -> list[dict[str, Any]]:
    """Every step behind an artifact, once each, from its provenance records alone (no image
    tables read): asset key, run id, code version, partition, artifact folder and the raw
    data versions a manifest step recorded."""
    steps: dict[tuple[str, str], dict[str, Any]] = {}
    pending = [Path(path)]
    while pending:
        provenance_path = find_provenance(pending.pop())
        if provenance_path is None:
            continue
        record = read_json(provenance_path)
        identity = (record["asset_key"], str(provenance_path.parent))
        if identity in steps:
            continue
        steps[identity] = {
            "asset_key": record["asset_key"],
            "run_id": record["run_id"],
            "code_version": record.get("code_version"),
            "partition": record.get("partition"),
            "folder": str(provenance_path.parent),
            "raw_data_versions": record.get("raw_data_versions", {}),
        }
        pending.extend(Path(upstream["path"]) for upstream in record.get("upstream", []))
    return list(steps.values())


def _node(provenance_path: Path, artifact: Path) -> LineageNode:
    record = read_json(provenance_path)
    node = LineageNode(
        asset_key=record["asset_key"],
        run_id=record["run_id"],
        code_version=record.get("code_version"),
        artifact=str(artifact),
        config=record.get("config", {}),
        raw_data_versions=record.get("raw_data_versions", {}),
    )
    node.images = _images_behind(node.asset_key, artifact, provenance_path.parent)
    for upstream in record.get("upstream", []):
        upstream_path = Path(upstream["path"])
        parent = find_provenance(upstream_path)
        if parent is None:
            node.upstream.append(
                LineageNode(upstream["asset_key"], upstream["run_id"], None, str(upstream_path), {})
            )
        else:
            node.upstream.append(_node(parent, upstream_path))
    return node


def _images_behind(asset_key: str, artifact: Path, folder: Path) -> dict[str, Any]:
    """Which raw images a step's artifact speaks for, where the step's tables say so."""
    table_name = {
        "gradcam_gallery": artifact_names.EXPLAINED_IMAGES,
        "model_evaluation": artifact_names.PREDICTIONS,
        "dataset_splits": artifact_names.SPLITS,
        "balanced_index": artifact_names.INDEX,
        "image_manifest": artifact_names.MANIFEST,
    }.get(asset_key)
    if table_name is None or not (folder / table_name).exists():
        return {}
    table = pd.read_parquet(folder / table_name)
    if asset_key == "gradcam_gallery" and artifact.suffix == ".png":
        # A gallery PNG is named <class>_<correct|misclassified>.png.
        stem = artifact.stem
        for outcome in ("correct", "misclassified"):
            if stem.endswith(f"_{outcome}"):
                target = stem.removesuffix(f"_{outcome}")
                right = table["predicted_class"] == table["target_class"]
                keep = right if outcome == "correct" else ~right
                table = table[(table["target_class"] == target) & keep]
    if asset_key == "image_manifest":
        table = table[table["status"] == "ok"]
    columns = [c for c in ("dataset", "path", "sha256", "target_class", "split") if c in table]
    return {
        "table": str(folder / table_name),
        "n_images": int(len(table)),
        "by_split": table["split"].value_counts().to_dict() if "split" in table else {},
        "rows": table[columns].to_dict("records"),
    }


def render_text(node: LineageNode, depth: int = 0, shown: set | None = None) -> list[str]:
    """Indented, human-readable chain; run ids open each step in the Dagster UI."""
    shown = set() if shown is None else shown
    pad = "   " * depth
    arrow = "" if depth == 0 else "<- "
    header = f"{pad}{arrow}{node.asset_key}  (run {node.run_id}, code version {node.code_version})"
    identity = (node.asset_key, node.run_id, node.artifact)
    if identity in shown:
        return [f"{header}  [its lineage is shown above]"]
    shown.add(identity)
    lines = [header, f"{pad}   artifact: {node.artifact}"]
    if node.config:
        lines.append(f"{pad}   config: {node.config}")
    for key, version in node.raw_data_versions.items():
        lines.append(f"{pad}   <- {key}  (data version {version})")
    images = node.images
    if images and depth == 0:
        lines.append(f"{pad}   raw images ({images['n_images']}, from {images['table']}):")
        for row in images["rows"][:MAX_IMAGES_IN_TEXT]:
            lines.append(f"{pad}     {row['dataset']}/{row['path']}  sha256 {row['sha256']}")
        if images["n_images"] > MAX_IMAGES_IN_TEXT:
            more = images["n_images"] - MAX_IMAGES_IN_TEXT
            lines.append(f"{pad}     ... {more} more (--json lists all)")
    elif images:
        by_split = f", by split {images['by_split']}" if images["by_split"] else ""
        lines.append(f"{pad}   images: {images['n_images']}{by_split} (--json lists them)")
    for upstream in node.upstream:
        lines.extend(render_text(upstream, depth + 1, shown))
    return lines
