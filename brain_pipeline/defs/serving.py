"""ood_guard: the out-of-distribution guard fitted for a trained model, and how well it works.

`predict`, `explain` and `serve` load the guard fitted for the model they serve (found by
the model file it names) and refuse to classify images it scores above its threshold.
"""

import dagster as dg
import numpy as np

from brain_pipeline.core import artifact_names, plots
from brain_pipeline.core.artifacts import write_json
from brain_pipeline.core.imaging.preprocessing import filesystem_path
from brain_pipeline.core.serving import calibration
from brain_pipeline.core.serving.predictor import Predictor
from brain_pipeline.defs.ingestion import dataset_splits
from brain_pipeline.defs.model_inputs import ModelInputs
from brain_pipeline.defs.resources import CarbonTracker, PipelineStorage
from brain_pipeline.defs.support import ArtifactStep, progress_log
from brain_pipeline.defs.training import trained_model


class GuardConfig(dg.Config):
    quantile: float = 0.99  # of validation scores: the refusal threshold
    non_mri_per_kind: int = 20  # generated non-MRI images of each kind, to measure against
    seed: int = 0


@dg.asset(
    deps=[trained_model, dataset_splits],
    group_name="model",
    code_version="2",
    kinds={"scikitlearn"},
)
def ood_guard(
    context: dg.AssetExecutionContext,
    config: GuardConfig,
    storage: PipelineStorage,
    carbon: CarbonTracker,
) -> dg.MaterializeResult:
    """Refuses images unlike the training slices: AUROC and false rejections, measured."""
    step = ArtifactStep(context, storage, config=config.model_dump(), carbon=carbon)
    if reused := step.reused():
        return reused
    inputs = ModelInputs(step)
    version = inputs.version
    predictor = Predictor(inputs.model, inputs.preprocessing, version, inputs.model_file)

    def features_of(split: str, sample: bool = False) -> np.ndarray:
        # The whole split's tensors are the cache training and evaluation already built.
        rows = inputs.rows(split)
        tensors, _ = inputs.tensors(rows, log_progress=False)
        chosen = calibration.train_sample(len(rows), config.seed) if sample else slice(None)
        rows, tensors = rows.iloc[chosen], tensors[chosen]
        files = [
            filesystem_path(inputs.raw.roots[d], p)
            for d, p in zip(rows["dataset"], rows["path"], strict=True)
        ]
        context.log.info(f"guard features of the {split} split ({len(files)} images)")
        return calibration.split_features(predictor, tensors, files, progress_log(context, "read"))

    with step.tracked(model_version=version):
        train, validation, test = (
            features_of("train", True),
            features_of("val"),
            features_of("test"),
        )
        others, kinds = calibration.non_mri_features(
            predictor, config.non_mri_per_kind, config.seed
        )
        guard, report = calibration.fit_and_measure(
            train, validation, test, others, kinds, config.quantile
        )
    guard.summary.update(model_path=str(inputs.model_file.resolve()), model_version=version)
    path = guard.save(step.folder)
    write_json(step.folder / artifact_names.SCORES, report)
    return step.result(
        _metadata(step, guard, report, kinds) | {"path": dg.MetadataValue.path(str(path))}
    )


def _metadata(step: ArtifactStep, guard, report: dict, kinds: list[str]) -> dict:
    other_scores = np.asarray(report["other_scores"])
    by_kind = {k: other_scores[[kind == k for kind in kinds]] for k in dict.fromkeys(kinds)}
    return {
        "model_version": guard.summary["model_version"],
        "threshold": guard.threshold,
        "auroc": report["auroc"],
        "false_rejection_rate": report["false_rejection_rate"],
        "non_mri_flagged_rate": report["other_flagged_rate"],
        "n_test_mri": report["n_mri"],
        "n_non_mri": report["n_other"],
        "non_mri_flagged_by_kind": dg.MetadataValue.json(report["other_flagged_by_kind"]),
        "scores": step.figure(
            "guard_scores.png",
            plots.guard_scores_plot(report["mri_scores"], by_kind, guard.threshold),
        ),
    }
