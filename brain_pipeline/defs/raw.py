"""One observable source per configured dataset: `raw/<name>`, versioned by its files."""

import dagster as dg

from brain_pipeline.core.data.sources import DatasetSpec, RawDataConfig, dataset_fingerprint


def raw_dataset_source(spec: DatasetSpec) -> dg.SourceAsset:
    """The dataset's data version is the fingerprint of its files (paths, sizes, mtimes)."""

    @dg.observable_source_asset(
        key=["raw", spec.name],
        group_name="raw",
        description=f"Raw image files under {spec.root}",
    )
    def _observe() -> dg.ObserveResult:
        return dg.ObserveResult(
            data_version=dg.DataVersion(dataset_fingerprint(spec.root, spec.lesion_masks.folder)),
            metadata={"path": dg.MetadataValue.path(str(spec.root))},
        )

    return _observe


def raw_dataset_sources(raw: RawDataConfig) -> list[dg.SourceAsset]:
    """The sources of every dataset in `datasets.toml`: the only generated assets."""
    return [raw_dataset_source(spec) for spec in raw.datasets]
