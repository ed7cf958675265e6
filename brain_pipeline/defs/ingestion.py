"""Ingestion: manifest/<dataset> -> image_manifest -> balanced_index -> dataset_splits."""

import dagster as dg
import pandas as pd

from brain_pipeline.core import artifact_names, plots
from brain_pipeline.core.artifacts import content_version, write_json, write_parquet
from brain_pipeline.core.data import dedup, manifest_io, reports, resaved, shortcuts, splits
from brain_pipeline.core.data.manifest import (
    MANIFEST_SCHEMA,
    build_manifest,
    manifest_summary,
    readable_thumbnails,
    to_grayscale,
)
from brain_pipeline.core.data.neighbours import NeighbourIndex
from brain_pipeline.core.data.sources import dataset_fingerprint
from brain_pipeline.core.imaging.preprocessing import filesystem_path, load_image
from brain_pipeline.defs.resources import CarbonTracker, PipelineStorage
from brain_pipeline.defs.support import (
    ArtifactStep,
    UpstreamArtifact,
    markdown_table,
    previous_result,
)

_INDEX = dedup.IndexSettings()
SELF_TEST_IMAGES = 30  # images whose altered copies the index's self-test verifies
_SPLITS = splits.SplitSettings()


class IndexConfig(dg.Config):
    """The launchpad's face of core.data.dedup.IndexSettings."""

    seed: int = _INDEX.seed
    near_duplicate_cosine: float = _INDEX.near_duplicate_cosine
    detect_resaved_copies: bool = _INDEX.detect_resaved_copies
    resaved_similarity: float = _INDEX.resaved_similarity
    balance_classes: bool = _INDEX.balance_classes

    def to_core(self) -> dedup.IndexSettings:
        return dedup.IndexSettings(**self.model_dump())


class SplitConfig(dg.Config):
    """The launchpad's face of core.data.splits.SplitSettings."""

    salt: str = _SPLITS.salt
    val_fraction: float = _SPLITS.val_fraction
    test_fraction: float = _SPLITS.test_fraction
    test_images_per_class: int | None = _SPLITS.test_images_per_class

    def to_core(self) -> splits.SplitSettings:
        return splits.SplitSettings(**self.model_dump())


def manifest_key(dataset: str) -> dg.AssetKey:
    return dg.AssetKey(["manifest", dataset])


def dataset_manifest_asset(dataset: str) -> dg.AssetsDefinition:
    """`manifest/<dataset>`: the manifest of one raw dataset. One asset per dataset keeps the
    lineage readable (raw/x -> manifest/x) and lets a change to one dataset re-scan only it,
    on a worker of its own."""

    @dg.asset(
        key=manifest_key(dataset),
        deps=[dg.AssetKey(["raw", dataset])],
        group_name="data",
        code_version="5",
        kinds={"pandas", "parquet"},
        description=f"Every file of the raw dataset {dataset}: hash, class, format, status.",
    )
    def _manifest(
        context: dg.AssetExecutionContext, storage: PipelineStorage, carbon: CarbonTracker
    ) -> dg.MaterializeResult:
        return dataset_manifest(context, storage, carbon, dataset)

    return _manifest


def dataset_manifest(
    context: dg.AssetExecutionContext, storage: PipelineStorage, carbon: CarbonTracker, name: str
) -> dg.MaterializeResult:
    """Every file of one raw dataset: hash, class, format, size, status and reason."""
    raw = storage.raw_data()
    spec = next((d for d in raw.datasets if d.name == name), None)
    if spec is None:
        raise ValueError(
            f"dataset {name!r} is no longer in {raw.data_dir}/datasets.toml: reload the code"
        )
    # Fingerprint the files now rather than trust the last observation, which a run that does
    # not observe the source would leave stale; raw/<name> reports the same data version.
    fingerprint = {f"raw/{name}": dataset_fingerprint(spec.root, spec.lesion_masks.folder)}
    step = ArtifactStep(
        context,
        storage,
        config={
            "root": str(spec.root),
            "class_map": dict(sorted(spec.class_map.items())),
            "group_pattern": spec.group_pattern.pattern if spec.group_pattern else None,
        },
        upstream_versions=fingerprint,  # raw/<name>, fingerprinted now; nothing to read
        carbon=carbon,
        reads_deps=False,
    )
    if reused := step.reused():
        return reused
    previous = previous_result(context)  # unchanged files are not decoded again
    with step.tracked():
        manifest, decoded = build_manifest(
            [spec],
            None if previous is None else pd.read_parquet(previous.path),
            progress=lambda done, total: context.log.info(f"decoded {done}/{total} files"),
        )
    path = write_parquet(step.folder / artifact_names.MANIFEST, manifest, schema=MANIFEST_SCHEMA)
    summary = manifest_summary(manifest)
    return step.result(
        {
            "path": dg.MetadataValue.path(str(path)),
            **{key: summary[key] for key in ("n_files", "n_ok", "n_rejected", "n_skipped")},
            "n_unmapped": summary["n_unmapped"],
            "files_decoded_this_run": decoded,
            "rejects_by_reason": dg.MetadataValue.json(summary["rejects_by_reason"]),
            **_lesion_mask_metadata(summary),
        },
        provenance={"raw_data_versions": fingerprint},
    )


def _lesion_mask_metadata(summary: dict) -> dict:
    """Images with a lesion mask, and the masks found but refused (each names its file)."""
    problems = summary["lesion_mask_problems"]
    return {"n_lesion_masks": summary["n_lesion_masks"]} | (
        {"lesion_mask_problems": dg.MetadataValue.json(problems)} if problems else {}
    )


def image_manifest_asset(datasets: list[str]) -> dg.AssetsDefinition:
    """`image_manifest`: the per-dataset manifests combined, for everything downstream."""
    parts = [manifest_key(name) for name in datasets]

    @dg.asset(
        name="image_manifest", deps=parts, group_name="data", code_version="6", kinds={"parquet"}
    )
    def _combined(
        context: dg.AssetExecutionContext, storage: PipelineStorage
    ) -> dg.MaterializeResult:
        """Every file in every raw dataset: the per-dataset manifests, combined."""
        return image_manifest(context, storage)

    return _combined


def image_manifest(
    context: dg.AssetExecutionContext, storage: PipelineStorage
) -> dg.MaterializeResult:
    """Every file in every raw dataset: the manifest parts (its deps, in the order of
    datasets.toml), streamed into one file."""
    step = ArtifactStep(context, storage, config={})
    if reused := step.reused():
        return reused
    path = step.folder / artifact_names.MANIFEST
    parts = [part.path for part in step.upstream.values()]
    manifest_io.combine(parts, path, MANIFEST_SCHEMA)
    table = manifest_io.read_without_blobs(path)
    summary = manifest_summary(table)
    write_json(step.folder / artifact_names.MANIFEST_SUMMARY, summary)
    counts, formats = reports.manifest_tables(table)
    return step.result(
        {
            "path": dg.MetadataValue.path(str(path)),
            **{key: summary[key] for key in ("n_files", "n_ok", "n_rejected", "n_skipped")},
            "n_unmapped": summary["n_unmapped"],
            "rejects_by_reason": dg.MetadataValue.json(summary["rejects_by_reason"]),
            **_lesion_mask_metadata(summary),
            "class_counts_per_dataset": markdown_table(counts),
            "formats_and_modes": markdown_table(formats),
            "image_sizes": step.figure("image_sizes.png", plots.image_sizes_plot(table)),
            "class_distribution": step.figure(
                "class_distribution.png",
                plots.class_distribution(counts, "Files per dataset and class (raw)"),
            ),
        },
        # Downstream reads the rows, not the run that combined them.
        content_version=content_version(
            table,
            ["dataset", "path", "sha256", "status", "target_class", "subject", "lesion_mask"],
        ),
    )


@dg.asset(deps=["image_manifest"], group_name="data", code_version="5", kinds={"pandas", "parquet"})
def balanced_index(
    context: dg.AssetExecutionContext, config: IndexConfig, storage: PipelineStorage
) -> dg.MaterializeResult:
    """Unique contents, near-duplicate groups (`group_id`), classes balanced by downsampling."""
    # External datasets are scored, never trained on: they stay out of the index, and a
    # change of roles changes the input signature.
    training = storage.raw_data().names("training")
    step = ArtifactStep(
        context,
        storage,
        config=config.model_dump() | {"training_datasets": training},
    )
    if reused := step.reused():
        return reused
    settings = config.to_core()
    manifest_path = step.upstream["image_manifest"].path
    # Thumbnails are read straight into one matrix, and only for images new to the index.
    blobs = ("keypoints", "detail") if settings.detect_resaved_copies else ()
    manifest = manifest_io.read_without_blobs(manifest_path, keep=blobs)
    manifest = manifest[manifest["dataset"].isin(training)].reset_index(drop=True)
    context.log.info("grouping near duplicates (thumbnails, then re-saved copies)")
    built = dedup.build_balanced_index(
        manifest,
        settings,
        thumbnail_of=lambda shas: manifest_io.read_thumbnails(manifest_path, shas)[0],
        previous_neighbours=_previous_neighbours(context),
    )
    index, conflicts, report, links = built[:4]
    path = write_parquet(step.folder / artifact_names.INDEX, index)
    write_parquet(step.folder / artifact_names.LABEL_CONFLICTS, conflicts)
    write_parquet(step.folder / artifact_names.RESAVED_LINKS, links)
    write_json(step.folder / artifact_names.INDEX_REPORT, report.__dict__)
    built.neighbours.save(step.folder / artifact_names.NEIGHBOURS_FOLDER)
    # The raw files' shortcut audit, read by the shortcut_audit_raw_files check; the
    # neighbour index already holds every content's thumbnail.
    thumbnails = built.neighbours.thumbnails_of(index["sha256"])
    audited = index.assign(thumbnail=[row.tobytes() for row in thumbnails])
    raw_probe = shortcuts.probe_accuracy(
        shortcuts.raw_file_statistics(audited), audited["target_class"], audited["group_id"]
    )
    write_json(step.folder / artifact_names.SHORTCUT_AUDIT, raw_probe.as_dict())
    roots = storage.raw_data().roots
    return step.result(
        {
            "path": dg.MetadataValue.path(str(path)),
            "n_rows": len(index),
            **_index_metadata(step, manifest, index, report, roots, settings.seed),
            "neighbour_index": dg.MetadataValue.json(built.neighbour_update),
            **_resaved_metadata(step, manifest, (index, report, links), roots, settings),
        },
        # Downstream reads contents, groups, classes and the file each content is read from:
        # an addition that changes none of them (a copy that does not become the file read, a
        # rejected or unmapped file) leaves the data version, and so every derived asset, as
        # it was.
        content_version=content_version(
            index, ["sha256", "group_id", "target_class", "dataset", "path"]
        ),
    )


def _previous_neighbours(context: dg.AssetExecutionContext) -> NeighbourIndex | None:
    """The thumbnail neighbour index saved by the current balanced_index, if it has one:
    updating it searches only the images added since."""
    previous = previous_result(context)
    folder = None if previous is None else previous.path.parent / artifact_names.NEIGHBOURS_FOLDER
    if folder is None or not folder.is_dir():
        return None
    try:
        return NeighbourIndex.load(folder)
    except (OSError, ValueError) as exc:
        context.log.warning(f"rebuilding the neighbour index: {folder} is unusable ({exc})")
        return None


def _index_metadata(step, manifest, index, report, roots, seed) -> dict:
    per_dataset, overall = reports.counts_by_stage(manifest, index, report.counts_before_balancing)
    title = "Images per class: files, unique contents, after balancing"
    return {
        "n_unique_contents": report.n_unique_contents,
        "n_exact_duplicate_files": report.n_exact_duplicate_files,
        "n_label_conflicts": report.n_conflicting_contents,
        "n_near_duplicate_groups": report.n_near_duplicate_groups,
        # Joins: how many images image content put in a group with another, how many groups
        # the subject ids in file names merged on top.
        "groups_joined_by_content": report.n_unique_contents - report.n_content_groups,
        "groups_joined_by_subject_ids": report.n_subject_joins,
        "n_named_subjects": report.n_subjects,
        "groups_per_source": dg.MetadataValue.json(report.groups_per_dataset),
        "largest_group_size": report.largest_group_size,
        "group_size_distribution": dg.MetadataValue.json(report.group_size_distribution),
        "largest_groups": markdown_table(reports.largest_groups(index)),
        "class_counts": markdown_table(overall),
        "class_counts_per_dataset": markdown_table(per_dataset),
        "class_balance": step.figure(
            "class_balance.png", plots.class_distribution(overall.T, title)
        ),
        "samples_per_class": step.figure(
            "samples_per_class.png", reports.sample_grid(index, roots, seed, by="target_class")
        ),
        "samples_per_source": step.figure(
            "samples_per_source.png", reports.sample_grid(index, roots, seed, by="dataset")
        ),
    }


def _resaved_metadata(step, manifest, built, roots, settings) -> dict:
    """How the re-saved copy criterion changed the groups, and its recall on altered copies
    of a sample of this index's own images."""
    index, report, links = built
    if not settings.detect_resaved_copies:
        return {"duplicate_definition": "thumbnail cosine only (re-saved copies not detected)"}
    sample = index.sample(n=min(SELF_TEST_IMAGES, len(index)), random_state=settings.seed)
    images = [
        to_grayscale(load_image(filesystem_path(roots[d], p)))
        for d, p in zip(sample["dataset"], sample["path"], strict=True)
    ]
    test = resaved.self_test(images, resaved.Acceptance(settings.resaved_similarity), settings.seed)
    metadata = {
        "duplicate_definition": (
            f"thumbnail cosine >= {settings.near_duplicate_cosine}, or a re-saved copy "
            f"(ORB keypoints, aligned rank similarity >= {settings.resaved_similarity})"
        ),
        "n_thumbnail_groups": report.n_thumbnail_groups,
        "resaved_copies_merged": len(links),
        "resaved_self_test": dg.MetadataValue.json(test),
    }
    if len(links):
        details = readable_thumbnails(manifest, ("detail",)).set_index("sha256")["detail"]
        metadata["resaved_examples"] = step.figure(
            "resaved_examples.png", reports.resaved_pairs_figure(links, details)
        )
    return metadata


@dg.asset(deps=[balanced_index], group_name="data", code_version="2", kinds={"pandas", "parquet"})
def dataset_splits(
    context: dg.AssetExecutionContext, config: SplitConfig, storage: PipelineStorage
) -> dg.MaterializeResult:
    """Train / val / test by near-duplicate group: stable, stratified, leakage-free."""
    step = ArtifactStep(context, storage, config=config.model_dump())
    if reused := step.reused():
        return reused
    table = splits.split_index(
        pd.read_parquet(step.upstream["balanced_index"].path), config.to_core()
    )
    # Yesterday's test set stays the test set: inherit assignments made under this config.
    previous = _previous_splits(context, config)
    table, changes = splits.keep_previous_assignment(
        table, None if previous is None else pd.read_parquet(previous.path)
    )
    if changes.moved_images:
        context.log.warning(
            f"{len(changes.moved_images)} images moved split: new images joined groups "
            "from different splits (see moved_images.json)"
        )
    path = write_parquet(step.folder / artifact_names.SPLITS, table)
    write_json(step.folder / artifact_names.MOVED_IMAGES, changes.moved_images)
    counts = splits.split_class_counts(table)
    return step.result(
        {
            "path": dg.MetadataValue.path(str(path)),
            **{f"n_{name}": int((table["split"] == name).sum()) for name in splits.SPLITS},
            "split_class_counts": markdown_table(counts),
            **splits.leakage_report(table),
            "groups_kept_from_previous_splits": changes.inherited_groups,
            "bridging_groups": changes.bridging_groups,
            "moved_images": len(changes.moved_images),
            "split_config": dg.MetadataValue.json(config.model_dump()),
            "split_distribution": step.figure(
                "split_distribution.png",
                plots.class_distribution(counts, "Images per split and class"),
            ),
        },
        # The previous splits are an input too: existing images keep their split from them.
        more_upstream=[previous] if previous else [],
        # What a model sees: which contents are in which split, with which class.
        content_version=content_version(table, ["sha256", "split", "target_class"]),
    )


def _previous_splits(
    context: dg.AssetExecutionContext, config: SplitConfig
) -> UpstreamArtifact | None:
    """The current splits artifact, if it was made with the same split config."""
    previous = previous_result(context)
    if previous is None or "split_config" not in previous.metadata:
        return None
    if previous.metadata["split_config"].value != config.model_dump():
        return None
    return UpstreamArtifact("dataset_splits", previous.path, previous.run_id, previous.data_version)
