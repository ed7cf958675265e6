"""external_evaluation: the model on datasets it never trained on (role = "external")."""

import dagster as dg
import numpy as np
import pandas as pd

from brain_pipeline.core import artifact_names
from brain_pipeline.core.artifacts import write_json, write_parquet
from brain_pipeline.core.classes import TARGET_CLASSES
from brain_pipeline.core.data import external, manifest_io
from brain_pipeline.core.explain.comparison import localisation_of_rows
from brain_pipeline.core.explain.method_names import DEFAULT_METHOD
from brain_pipeline.core.model.external import external_scores, headline
from brain_pipeline.core.model.training import predict_probabilities
from brain_pipeline.defs.model_inputs import ModelInputs
from brain_pipeline.defs.resources import CarbonTracker, PipelineStorage
from brain_pipeline.defs.support import ArtifactStep, markdown_table
from brain_pipeline.defs.training import trained_model

NONE_CONFIGURED = (
    'No dataset has `role = "external"` in datasets.toml: nothing to score. Declare a download '
    "the model must never train on that way to see how the model does on it."
)


@dg.asset(
    deps=[trained_model, "image_manifest"],
    group_name="model",
    code_version="2",
    kinds={"scikitlearn"},
)
def external_evaluation(
    context: dg.AssetExecutionContext, storage: PipelineStorage, carbon: CarbonTracker
) -> dg.MaterializeResult:
    """The model on each external dataset, copies of training images left out and counted."""
    raw = storage.raw_data()
    roles = {role: raw.names(role) for role in ("training", "external")}
    step = ArtifactStep(context, storage, config=roles, carbon=carbon)
    if reused := step.reused():
        return reused
    inputs = ModelInputs(step)
    version = inputs.version
    if not roles["external"]:
        path = write_json(
            step.folder / artifact_names.EXTERNAL, {"model_version": version, "datasets": {}}
        )
        return step.result(
            {
                "model_version": version,
                "n_external_datasets": 0,
                "note": dg.MetadataValue.md(NONE_CONFIGURED),
                "path": dg.MetadataValue.path(str(path)),
            }
        )
    manifest = manifest_io.read_without_blobs(
        step.upstream["image_manifest"].path, keep=manifest_io.BLOB_COLUMNS
    )
    pool = external.scorable_rows(manifest, roles["training"])
    with step.tracked(model_version=version):
        results, tables = _score_each(context, inputs, manifest, pool, roles["external"])
    path = write_json(
        step.folder / artifact_names.EXTERNAL, {"model_version": version, "datasets": results}
    )
    for name, table in tables.items():
        write_parquet(step.folder / f"{name}.parquet", table)
    summary = pd.DataFrame(
        {
            name: {
                "images": r["n_images_in_set"],
                **r["copies_excluded"],
                "scored": r["n_images"],
                "groups": r["n_groups"],
                "scores (95% interval)": headline(r),
            }
            for name, r in results.items()
        }
    ).T
    return step.result(
        {
            "model_version": version,
            "n_external_datasets": len(results),
            "external_datasets": markdown_table(summary),
            "scores": dg.MetadataValue.json(results),
            "path": dg.MetadataValue.path(str(path)),
        }
    )


def _score_each(context, inputs: ModelInputs, manifest, pool, external_names):
    """Per external dataset: copies found, the rest scored; (results, per-image tables)."""
    results, tables = {}, {}
    for name in external_names:
        rows = external.scorable_rows(manifest, [name])
        context.log.info(f"{name}: {len(rows)} images; looking for copies of training images")
        flags = external.copies_of_training_pool(rows, pool)
        kept = rows[~flags["excluded"]].reset_index(drop=True)
        kept = kept.assign(group=external.groups_within(kept))
        probabilities = np.zeros((0, len(TARGET_CLASSES)))
        if len(kept):
            tensors, _ = inputs.tensors(kept)
            probabilities = predict_probabilities(inputs.model, tensors)
        scores = external_scores(kept, probabilities, TARGET_CLASSES)
        if len(kept):  # where its images have lesion masks: do the maps point at them?
            located = localisation_of_rows(
                inputs.model, kept, tensors, inputs.raw, inputs.preprocessing
            )
            if name in located:
                scores["localisation"] = located[name] | {"method": DEFAULT_METHOD}
        scores["n_images_in_set"] = len(rows)
        scores["copies_excluded"] = {k: int(flags[k].sum()) for k in external.COPY_KINDS}
        results[name] = scores
        table = rows[["sha256", "path", "source_label", "target_class"]].join(flags)
        predicted = pd.Series(pd.NA, index=table.index, dtype="object")
        if len(kept):
            predicted[~flags["excluded"].to_numpy()] = [
                TARGET_CLASSES[i] for i in probabilities.argmax(axis=1)
            ]
        tables[name] = table.assign(predicted_class=predicted)
    return results, tables
