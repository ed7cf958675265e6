"""Asset checks, beside the assets they guard. Each reads the asset's current artifact."""

from pathlib import Path

import dagster as dg
import pandas as pd

from brain_pipeline.core import artifact_names
from brain_pipeline.core.artifacts import parquet_columns, read_json
from brain_pipeline.core.classes import TARGET_CLASSES
from brain_pipeline.core.data import shortcuts, splits
from brain_pipeline.core.data.dedup import cross_split_near_duplicates
from brain_pipeline.core.data.manifest import readable_thumbnails
from brain_pipeline.defs.support import upstream_artifact

MAX_REJECT_RATE = 0.05
MIN_IMAGES_PER_CLASS = 20
MAX_CLASS_SHARE_DEVIATION = 0.10
# The explanation targets, read on the whole tumour (core and oedema halo, as BraTS scores
# it); see docs/decisions.md, "Localisation is scored on the whole tumour".
MIN_POINTING_GAME = 0.80
MIN_HEAT_IN_BRAIN = 0.80
MAX_DELETION_VS_RANDOM = 0.70


def _artifact(context: dg.AssetCheckExecutionContext, key: str) -> Path:
    return upstream_artifact(context, key).path


@dg.asset_check(asset="image_manifest", description=f"At most {MAX_REJECT_RATE:.0%} rejects")
def reject_rate(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    manifest = pd.read_parquet(_artifact(context, "image_manifest"), columns=["status", "reason"])
    images = manifest[manifest["status"] != "skipped"]
    rate = float((images["status"] == "rejected").mean()) if len(images) else 0.0
    return dg.AssetCheckResult(
        passed=rate <= MAX_REJECT_RATE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"reject_rate": rate, "threshold": MAX_REJECT_RATE},
    )


@dg.asset_check(asset="image_manifest", description="Every image folder maps to a class")
def unmapped_folders(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    columns = ["dataset", "path", "status", "target_class"]
    manifest = pd.read_parquet(_artifact(context, "image_manifest"), columns=columns)
    images = manifest[manifest["status"] == "ok"]
    unmapped = images[images["target_class"].isna()]
    folders = sorted(
        {
            f"{d}/{Path(p).parent}"
            for d, p in zip(unmapped["dataset"], unmapped["path"], strict=True)
        }
    )
    # A download whose layout the class map does not know at all: the likeliest cause.
    mapped_share = images["target_class"].notna().groupby(images["dataset"]).mean()
    wholly_unmapped = sorted(mapped_share.index[mapped_share == 0])
    return dg.AssetCheckResult(
        passed=not folders,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"datasets with no mapped image: {', '.join(wholly_unmapped)}; map their folders "
            "with a class_map in datasets.toml"
            if wholly_unmapped
            else None
        ),
        metadata={
            "n_unmapped_images": len(unmapped),
            "folders": dg.MetadataValue.json(folders[:50]),
            "wholly_unmapped_datasets": dg.MetadataValue.json(wholly_unmapped),
        },
    )


@dg.asset_check(
    asset="balanced_index",
    description=f"Each class keeps >= {MIN_IMAGES_PER_CLASS} images",
    # Blocking: a class too small to learn stops the run, and no model trained on such an
    # index can become the champion (defs/models.py).
    blocking=True,
)
def min_images_per_class(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    index = pd.read_parquet(_artifact(context, "balanced_index"), columns=["target_class"])
    counts = index["target_class"].value_counts().to_dict()
    counts = {name: int(counts.get(name, 0)) for name in TARGET_CLASSES}
    return dg.AssetCheckResult(
        passed=min(counts.values()) >= MIN_IMAGES_PER_CLASS,
        metadata={"counts": dg.MetadataValue.json(counts), "minimum": MIN_IMAGES_PER_CLASS},
    )


@dg.asset_check(
    asset="dataset_splits",
    description="No exact copy, near-duplicate group, named subject or near-duplicate image "
    "across splits",
    # Blocking: test figures of leaky splits are not evidence; nothing downstream runs, and
    # no model trained on such splits can become the champion (defs/models.py).
    blocking=True,
)
def no_split_leakage(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    table = pd.read_parquet(_artifact(context, "dataset_splits"))
    report = splits.leakage_report(table)
    # Independent of the group ids: compare held-out images with train images directly.
    # Thumbnail twins (cosine >= 0.99) and re-saved copies (contrast, crop, zoom, re-encode).
    path = _artifact(context, "image_manifest")
    features = [c for c in ("thumbnail", "keypoints", "detail") if c in parquet_columns(path)]
    manifest = pd.read_parquet(path, columns=["sha256", "status", *features])
    contents = readable_thumbnails(manifest, tuple(features)).set_index("sha256")
    near = cross_split_near_duplicates(table, contents)
    if "keypoints" not in features:
        near["resaved_copies"] = "not compared: the manifest predates re-saved copy detection"
    report["held_out_images_with_a_near_duplicate_in_train"] = near.pop(
        "held_out_with_a_near_duplicate"
    )
    passed = sum(report.values()) == 0
    return dg.AssetCheckResult(passed=passed, metadata={**report, **near})


@dg.asset_check(
    asset="dataset_splits",
    description=f"Class shares per split within {MAX_CLASS_SHARE_DEVIATION:.0%} of overall",
)
def class_balance_per_split(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    table = pd.read_parquet(_artifact(context, "dataset_splits"))
    overall = table["target_class"].value_counts(normalize=True)
    shares = pd.crosstab(table["split"], table["target_class"], normalize="index")
    deviation = (shares - overall).abs().max().max()
    return dg.AssetCheckResult(
        passed=bool(deviation <= MAX_CLASS_SHARE_DEVIATION),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "max_share_deviation": float(deviation),
            "shares": dg.MetadataValue.md(shares.round(3).to_markdown()),
        },
    )


@dg.asset_check(
    asset="gradcam_gallery",
    description="Maps depend on the learned weights and beat random maps at deletion",
)
def explanation_sanity(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    scores = read_json(_artifact(context, "gradcam_gallery"))
    sane = abs(scores["sanity_rank_corr"]) < 0.5
    faithful = scores["deletion_auc"] < scores["deletion_auc_random"]
    return dg.AssetCheckResult(
        passed=bool(sane and faithful),
        metadata={
            "sanity_rank_corr": scores["sanity_rank_corr"],
            "deletion_auc": scores["deletion_auc"],
            "deletion_auc_random": scores["deletion_auc_random"],
            "weights_matter": bool(sane),
            "better_than_random": bool(faithful),
        },
    )


@dg.asset_check(
    asset="gradcam_gallery",
    description=(
        f"Pointing game on the whole tumour >= {MIN_POINTING_GAME} and above a map peaking at "
        f"the brain's centre, heat in brain >= {MIN_HEAT_IN_BRAIN}, deletion <= "
        f"{MAX_DELETION_VS_RANDOM} x random maps"
    ),
)
def explanation_targets(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    scores = read_json(_artifact(context, "gradcam_gallery"))
    pointing = scores.get("pointing_game_whole_tumour")  # None: no lesion masks (real data)
    deletion_ratio = scores["deletion_auc"] / scores["deletion_auc_random"]
    centre = scores.get("centre_baseline_pointing_game_whole_tumour")
    verdicts = {
        "heat_in_brain_met": scores["heat_in_brain"] >= MIN_HEAT_IN_BRAIN,
        "deletion_met": deletion_ratio <= MAX_DELETION_VS_RANDOM,
        "pointing_game_met": pointing is None or pointing >= MIN_POINTING_GAME,
        "beats_centre_baseline": pointing is None or centre is None or pointing > centre,
    }
    figures = {
        key: scores.get(key)
        for key in (
            "pointing_game_whole_tumour",
            "pointing_game_whole_tumour_chance",
            "pointing_game",
            "pointing_game_chance",
            "heat_in_whole_tumour",
            "whole_tumour_area_fraction",
            "top5_in_whole_tumour",
            "centre_baseline_pointing_game_whole_tumour",
            "heat_in_brain",
        )
    }
    return dg.AssetCheckResult(
        passed=all(verdicts.values()),
        severity=dg.AssetCheckSeverity.WARN,
        description=None if pointing is not None else "no lesion masks: pointing game not scored",
        metadata={
            **{k: v for k, v in figures.items() if v is not None},
            "deletion_vs_random": float(deletion_ratio),
            **verdicts,
        },
    )


def _audit_result(probe: dict, where: str, extra: dict | None = None) -> dg.AssetCheckResult:
    leaking = probe["leaking_features"]
    far_above_chance = probe["accuracy"] >= probe["chance"] + shortcuts.LEAK_MARGIN
    return dg.AssetCheckResult(
        passed=not far_above_chance,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"trivial statistics of the {where} predict the class at {probe['accuracy']:.2f} "
            f"(chance {probe['chance']:.2f}); leaking: {', '.join(leaking) or 'none alone'}"
        ),
        metadata={
            "probe_accuracy": probe["accuracy"],
            "chance": probe["chance"],
            "leaking_features": dg.MetadataValue.json(leaking),
            "per_feature_accuracy": dg.MetadataValue.json(probe["per_feature_accuracy"]),
            **(extra or {}),
        },
    )


@dg.asset_check(
    asset="balanced_index",
    description="Size, channels, format and brightness of the raw files do not give the class away",
)
def shortcut_audit_raw_files(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    folder = _artifact(context, "balanced_index").parent
    return _audit_result(read_json(folder / artifact_names.SHORTCUT_AUDIT), "raw files")


@dg.asset_check(
    asset="model_evaluation",
    description="The model's inputs carry no trivial class cue; the model beats the probe",
)
def shortcut_audit_model_inputs(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    audit = read_json(_artifact(context, "model_evaluation"))["shortcut_audit"]
    margins = {k: dg.MetadataValue.float(float(v)) for k, v in audit["held_out"].items()}
    return _audit_result(audit["model_inputs"], "preprocessed model inputs", margins)


ALL_CHECKS = [
    shortcut_audit_raw_files,
    shortcut_audit_model_inputs,
    reject_rate,
    unmapped_folders,
    min_images_per_class,
    no_split_leakage,
    class_balance_per_split,
    explanation_sanity,
    explanation_targets,
]
