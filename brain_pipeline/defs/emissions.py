"""emissions_record: the energy and CO2 of every tracked step, across model versions."""

from pathlib import Path

import dagster as dg
import pandas as pd

from brain_pipeline.core import artifact_names, plots
from brain_pipeline.core.artifacts import read_json, write_parquet
from brain_pipeline.core.emissions import (
    append_history,
    append_model_version,
    efficiency_by_model_version,
)
from brain_pipeline.defs.evaluation import model_evaluation
from brain_pipeline.defs.explanation import gradcam_gallery
from brain_pipeline.defs.resources import PipelineStorage
from brain_pipeline.defs.support import ArtifactStep, finite_or_text, markdown_table
from brain_pipeline.defs.training import trained_model

TRACKED_STEPS = ("trained_model", "model_evaluation", "gradcam_gallery")
EFFICIENCY_COLUMNS = [
    "model_version",
    "accuracy",
    "f1_macro",
    "energy_kwh",
    "emissions_kg",
    "cumulative_kwh",
    "accuracy_per_kwh",
    "gain_per_gram_co2",
]


def _manifest_part_records(manifest_folder: Path) -> list[dict]:
    """The energy records of the per-dataset manifests that image_manifest combined (the
    decoding work), found through its provenance."""
    provenance = read_json(manifest_folder / artifact_names.PROVENANCE)
    parts = [Path(upstream["path"]).parent for upstream in provenance["upstream"]]
    return [read_json(folder / artifact_names.EMISSIONS) for folder in parts]


@dg.asset(
    deps=["image_manifest", trained_model, model_evaluation, gradcam_gallery],
    group_name="model",
    code_version="2",
    kinds={"parquet"},
)
def emissions_record(
    context: dg.AssetExecutionContext, storage: PipelineStorage
) -> dg.MaterializeResult:
    """Energy and CO2 of every tracked step, and quality per kWh across model versions."""
    step = ArtifactStep(context, storage, config={})
    if reused := step.reused():
        return reused
    records = [
        *_manifest_part_records(step.upstream["image_manifest"].folder),
        *(read_json(step.upstream[key].folder / artifact_names.EMISSIONS) for key in TRACKED_STEPS),
    ]
    history_dir = storage.shared_dir(artifact_names.EMISSIONS_HISTORY)
    history = append_history(history_dir / artifact_names.EMISSIONS_STEPS, records)
    metrics = read_json(step.upstream["model_evaluation"].path)
    versions = append_model_version(history_dir / artifact_names.EMISSIONS_MODEL_VERSIONS, metrics)
    table = efficiency_by_model_version(history, versions)
    path = write_parquet(step.folder / artifact_names.EMISSIONS_HISTORY_TABLE, history)
    write_parquet(step.folder / artifact_names.EFFICIENCY, table)
    this_chain = pd.DataFrame(records).set_index("asset_key")
    totals = history.groupby("asset_key")[["energy_kwh", "emissions_kg", "duration_s"]].sum()
    return step.result(
        {
            "path": dg.MetadataValue.path(str(path)),
            "n_records": len(history),
            "n_model_versions": len(table),
            "steps_this_chain": markdown_table(
                this_chain[["duration_s", "energy_kwh", "emissions_kg", "measurement_mode"]]
            ),
            "totals_per_asset": markdown_table(totals),
            "efficiency_by_model_version": markdown_table(
                table[EFFICIENCY_COLUMNS].set_index("model_version")
            ),
            "test_accuracy_per_kwh": finite_or_text(table.iloc[-1]["accuracy_per_kwh"]),
            "efficiency": step.figure("efficiency.png", plots.efficiency_plot(table)),
        }
    )
