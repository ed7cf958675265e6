"""model_evaluation: the trained model on the test split, and its margin over shortcuts."""

import dagster as dg
import pandas as pd

from brain_pipeline.core import artifact_names, plots
from brain_pipeline.core.artifacts import write_json, write_parquet
from brain_pipeline.core.classes import TARGET_CLASSES
from brain_pipeline.core.data import shortcuts
from brain_pipeline.core.data.manifest import readable_thumbnails
from brain_pipeline.core.model import evaluation
from brain_pipeline.core.model.training import predict_probabilities
from brain_pipeline.defs.ingestion import dataset_splits
from brain_pipeline.defs.model_inputs import ModelInputs
from brain_pipeline.defs.resources import CarbonTracker, PipelineStorage
from brain_pipeline.defs.support import ArtifactStep, markdown_table
from brain_pipeline.defs.training import trained_model


@dg.asset(
    deps=[trained_model, dataset_splits, "image_manifest"],
    group_name="model",
    code_version="5",
    kinds={"scikitlearn"},
)
def model_evaluation(
    context: dg.AssetExecutionContext, storage: PipelineStorage, carbon: CarbonTracker
) -> dg.MaterializeResult:
    """Test-split metrics: accuracy, F1, report, confusion matrix, ROC-AUC, calibration."""
    step = ArtifactStep(context, storage, config={}, carbon=carbon)
    if reused := step.reused():
        return reused
    inputs = ModelInputs(step)
    test = inputs.rows("test")
    with step.tracked(model_version=inputs.version):
        tensors, labels = inputs.tensors(test)
        probabilities = predict_probabilities(inputs.model, tensors)
        metrics = evaluation.held_out_metrics(test, labels, probabilities, TARGET_CLASSES)
        thumbnails = readable_thumbnails(
            pd.read_parquet(
                step.upstream["image_manifest"].path, columns=["sha256", "status", "thumbnail"]
            )
        )
        metrics["shortcut_audit"] = shortcuts.audit_splits(
            inputs.splits.merge(thumbnails, on="sha256"),
            lambda rows: inputs.tensors(rows)[0],
            metrics["accuracy"],
        )
    metrics["model_version"] = inputs.version
    path = write_json(step.folder / artifact_names.METRICS, metrics)
    write_parquet(
        step.folder / artifact_names.PREDICTIONS,
        evaluation.predictions_table(test, probabilities, TARGET_CLASSES),
    )
    return step.result(_metadata(step, metrics) | {"path": dg.MetadataValue.path(str(path))})


def _by_source(results: dict[str, dict]) -> dg.MetadataValue | str:
    if not results:
        return "no test dataset holds both healthy and Alzheimer images"
    return markdown_table(pd.DataFrame(results).T)


def _metadata(step: ArtifactStep, metrics: dict) -> dict:
    audit = metrics["shortcut_audit"]
    return {
        "model_version": metrics["model_version"],
        "n_test_images": metrics["n_images"],
        **{
            key: metrics[key]
            for key in (
                "accuracy",
                "f1_macro",
                "f1_weighted",
                "roc_auc_macro",
                "expected_calibration_error",
            )
        },
        "within_source_healthy_vs_alzheimer_acc": metrics["within_source_healthy_vs_alzheimer"][
            "accuracy"
        ],
        "intervals_95": markdown_table(
            pd.DataFrame(metrics["intervals"]["metrics"]).T.round(3),
        ),
        "n_test_groups": metrics["intervals"]["n_groups"],
        "classification_report": markdown_table(
            pd.DataFrame(metrics["classification_report"]).T.round(3)
        ),
        "per_dataset": markdown_table(pd.DataFrame(metrics["per_dataset"]).T.round(3)),
        "healthy_vs_alzheimer_by_source": _by_source(metrics["healthy_vs_alzheimer_by_dataset"]),
        "raw_file_probe_accuracy": audit["raw_files"]["accuracy"],
        "tensor_probe_accuracy": audit["model_inputs"]["accuracy"],
        "margin_over_raw_file_probe": audit["held_out"]["margin_over_raw_file_probe"],
        "margin_over_tensor_probe": audit["held_out"]["margin_over_tensor_probe"],
        "shortcut_audit": dg.MetadataValue.json(audit),
        "confusion_matrix": step.figure(
            "confusion_matrix.png",
            plots.confusion_matrix_plot(metrics["confusion_matrix"], TARGET_CLASSES),
        ),
        "roc_curves": step.figure(
            "roc_curves.png", plots.roc_curves_plot(metrics["roc_curves"], metrics["roc_auc_ovr"])
        ),
        "reliability": step.figure(
            "reliability.png",
            plots.reliability_diagram(
                metrics["reliability_bins"], metrics["expected_calibration_error"]
            ),
        ),
    }
