"""A model card (Mitchell et al. 2019, "Model Cards for Model Reporting") for one model
version: a JSON record, and the Markdown the UI shows, built from the files the pipeline
wrote for that version. No figure is typed in by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from brain_pipeline.core import artifact_names
from brain_pipeline.core.artifacts import read_json
from brain_pipeline.core.classes import ALZHEIMER, HEALTHY
from brain_pipeline.core.model.external import headline

INTENDED_USE = {
    "primary_uses": "Research and teaching: how a CNN separates healthy, tumour and "
    "Alzheimer brain MRI slices from public Kaggle datasets, what it attends to, and what "
    "it costs in energy.",
    "primary_users": "ML engineers, students and researchers.",
    "out_of_scope": "Not a diagnostic device. Not for clinical decisions, triage or "
    "screening, nor for images from scanners, protocols or populations it was not trained on.",
}
SLICES_NOT_VOLUMES = (
    "It sees single 2-D slices, not volumes: one slice can miss or misplace a lesion."
)
SUBJECTS = (
    "Subjects are named only where file names carry an id (a scan or patient id, or a "
    "dataset's `group_pattern`); elsewhere they are inferred from near-duplicate groups "
    "(slices of one scan look alike), so a subject split into two groups can still leak "
    "across splits."
)
STYLE = (
    "The sources differ in style (size, format, skull, brightness, view), and a class may "
    "come mostly from one of them: part of the accuracy can come from telling sources apart. "
    "The shortcut probes below measure how much a model needs no brain to score."
)


def limitations(images_per_source_and_class: dict[str, dict[str, int]]) -> list[str]:
    """What the card warns of; the last item names the sources the training data had."""
    with_alzheimer = sorted(s for s, row in images_per_source_and_class.items() if ALZHEIMER in row)
    with_both = [s for s in with_alzheimer if HEALTHY in images_per_source_and_class[s]]
    if len(with_alzheimer) <= 1:
        alzheimer = (
            "Alzheimer images come from one source; healthy vs Alzheimer within that source "
            "is the figure that no style cue can help."
        )
    else:
        alzheimer = (
            f"Alzheimer images come from {len(with_alzheimer)} sources "
            f"({', '.join(with_alzheimer)}); healthy vs Alzheimer within each source that "
            f"holds both ({', '.join(with_both) or 'none'}) is the figure no style cue can help."
        )
    return [SLICES_NOT_VOLUMES, SUBJECTS, STYLE, alzheimer]


def training_data(splits: pd.DataFrame) -> dict[str, Any]:
    """Sources, images per class and split after deduplication, and how splits were grouped."""
    per_split = pd.crosstab(splits["target_class"], splits["split"])
    return {
        "sources": sorted(splits["dataset"].unique().tolist()),
        "images_after_deduplication": int(len(splits)),
        "near_duplicate_groups": int(splits["group_id"].nunique()),
        "images_per_class_and_split": {
            cls: {split: int(n) for split, n in row.items()} for cls, row in per_split.iterrows()
        },
        "images_per_source_and_class": {
            source: {cls: int(n) for cls, n in row.items() if n}
            for source, row in pd.crosstab(splits["dataset"], splits["target_class"]).iterrows()
        },
        "splitting": "Exact copies are merged, near-duplicate images (thumbnail cosine >= "
        "0.99, re-saved copies) are grouped, and whole groups go to one split: no slice of a "
        "group is trained on while another is tested, which is the leakage of a random "
        "split of near-identical slices.",
    }


def metrics_section(metrics: dict[str, Any]) -> dict[str, Any]:
    audit = metrics.get("shortcut_audit", {})
    held_out = audit.get("held_out", {})
    return {
        "test_images": metrics["n_images"],
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["f1_macro"],
        "roc_auc_macro": metrics.get("roc_auc_macro"),
        "expected_calibration_error": metrics["expected_calibration_error"],
        "per_class": {
            name: {k: row[k] for k in ("precision", "recall", "f1-score", "support")}
            for name, row in metrics["classification_report"].items()
            if isinstance(row, dict) and name not in ("macro avg", "weighted avg")
        },
        "per_source": metrics["per_dataset"],
        "within_source_healthy_vs_alzheimer": metrics["within_source_healthy_vs_alzheimer"],
        # per source holding both classes: per slice, and per subject where names give them
        "healthy_vs_alzheimer_by_source": metrics.get("healthy_vs_alzheimer_by_dataset", {}),
        "intervals": metrics.get("intervals"),
        "shortcut_probes": {
            "raw_file_probe_test_accuracy": held_out.get("raw_file_probe_test_accuracy"),
            "tensor_probe_test_accuracy": held_out.get("tensor_probe_test_accuracy"),
            "margin_over_raw_file_probe": held_out.get("margin_over_raw_file_probe"),
            "margin_over_tensor_probe": held_out.get("margin_over_tensor_probe"),
        },
    }


def energy_section(step_folders: dict[str, Path]) -> dict[str, Any]:
    """kWh and g CO2eq of each step that produced or judged this model."""
    section = {}
    for step, folder in step_folders.items():
        path = Path(folder) / artifact_names.EMISSIONS
        record = read_json(path) if path.is_file() else {}
        if record.get("measured"):
            section[step] = {
                "energy_kwh": record["energy_kwh"],
                "co2eq_g": 1000.0 * record["emissions_kg"],
                "duration_s": record.get("duration_s"),
                "measurement": record.get("measurement_mode"),
            }
        else:
            section[step] = {"energy_kwh": None, "note": record.get("not_measured_reason", "")}
    return section


def build_card(
    *,
    champion: dict[str, Any],
    training: dict[str, Any],
    metrics: dict[str, Any],
    splits: pd.DataFrame,
    explanation: dict[str, Any] | None,
    energy: dict[str, Any],
    lineage: list[dict[str, Any]],
    external: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card as one JSON-ready dict, section by section as in Mitchell et al."""
    return {
        "model_details": {
            "model_version": training["model_version"],
            "configuration": training.get("configuration"),
            "architecture": training["config"]["architecture"],
            "input": f"{training['config']['image_size']} px, skull stripping "
            f"{'on' if training['config']['skull_strip'] else 'off'}, intensity "
            f"{training['config']['intensity']}",
            "training": {
                **{k: training[k] for k in ("epochs_run", "best_epoch", "train_seconds")},
                # None: trained without temperature scaling (or before it existed)
                "temperature": training.get("temperature")
                if training["config"].get("temperature_scaling")
                else None,
            },
            "config": training["config"],
            "classes": training["class_names"],
            "status": "champion",
            "promotion": {
                k: champion.get(k)
                for k in ("decision", "kind", "reason", "decided_at", "comparison_images")
            },
        },
        "intended_use": INTENDED_USE,
        "training_data": training_data(splits),
        "metrics": metrics_section(metrics),
        "external_evaluation": external or {},
        "explanations": explanation or {"note": "no Grad-CAM gallery of this model version"},
        "energy": energy,
        "limitations": limitations(training_data(splits)["images_per_source_and_class"]),
        "lineage": lineage,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _external_lines(external: dict[str, Any]) -> list[str]:
    """Datasets the model never trained on (role "external"), copies of training images out."""
    if not external:
        return []
    lines = ["## External evaluation", ""]
    for name, result in external.items():
        copies = sum(result["copies_excluded"].values())
        lines.append(
            f"- {name}: {result['n_images']} images scored of {result['n_images_in_set']} "
            f"({copies} copies of training images left out); {headline(result)}"
        )
    return [*lines, ""]


def _interval_lines(intervals: dict[str, Any] | None) -> list[str]:
    if not intervals:
        return []
    return [
        f"{round(100 * intervals['level'])}% intervals ({intervals['method']}, "
        f"{intervals['n_groups']} groups, {intervals['n_resamples']} resamples):",
        "",
        *_table(intervals["metrics"], ["estimate", "low", "high"]),
        "",
    ]


def _table(rows: dict[str, dict[str, Any]], columns: list[str]) -> list[str]:
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return lines


def render_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown, for the Dagster UI and model_card.md."""
    details, data, metrics = card["model_details"], card["training_data"], card["metrics"]
    probes, within = metrics["shortcut_probes"], metrics["within_source_healthy_vs_alzheimer"]
    lines = [
        f"# Model card: {details['model_version']}",
        "",
        "## Model details",
        f"- Configuration `{details['configuration']}`: `{details['architecture']}`, "
        f"{details['input']}; {details['training']['epochs_run']} epochs "
        f"({details['training']['train_seconds']:.0f} s of training); "
        f"{_temperature_note(details['training']['temperature'])}.",
        f"- Classes: {', '.join(details['classes'])}.",
        f"- Champion since {details['promotion']['decided_at']} "
        f"({details['promotion']['kind']} promotion): {details['promotion']['reason']}.",
        "",
        "## Intended use",
        f"- {card['intended_use']['primary_uses']}",
        f"- Users: {card['intended_use']['primary_users']}",
        f"- **Out of scope:** {card['intended_use']['out_of_scope']}",
        "",
        "## Training data",
        f"Sources: {', '.join(data['sources'])}; {data['images_after_deduplication']} images "
        f"after deduplication in {data['near_duplicate_groups']} near-duplicate groups. "
        f"{data['splitting']}",
        "",
        *_table(data["images_per_class_and_split"], ["train", "val", "test"]),
        "",
        "## Metrics (test split)",
        f"Accuracy {_fmt(metrics['accuracy'])}, macro-F1 {_fmt(metrics['macro_f1'])}, "
        f"ROC-AUC {_fmt(metrics['roc_auc_macro'])}, expected calibration error "
        f"{_fmt(metrics['expected_calibration_error'])} on {metrics['test_images']} images.",
        "",
        *_table(metrics["per_class"], ["precision", "recall", "f1-score", "support"]),
        "",
        "Per source:",
        "",
        *_table(metrics["per_source"], ["n_images", "accuracy", "f1_macro"]),
        "",
        *_within_source_lines(within, metrics.get("healthy_vs_alzheimer_by_source")),
        *_interval_lines(metrics.get("intervals")),
        f"Shortcut probes on the same test split: raw-file probe "
        f"{_fmt(probes['raw_file_probe_test_accuracy'])}, tensor probe "
        f"{_fmt(probes['tensor_probe_test_accuracy'])}; the model's margin over them "
        f"{_fmt(probes['margin_over_raw_file_probe'])} and "
        f"{_fmt(probes['margin_over_tensor_probe'])}.",
        "",
        *_external_lines(card.get("external_evaluation") or {}),
        "## Explanations (Grad-CAM)",
        *[f"- {k}: {_fmt(v)}" for k, v in card["explanations"].items() if not isinstance(v, list)],
        "",
        "## Energy and CO2eq",
        *_table(card["energy"], ["energy_kwh", "co2eq_g", "duration_s"]),
        "",
        "## Limitations",
        *[f"- {item}" for item in card["limitations"]],
        "",
        "## Lineage",
        *[
            f"- `{step['asset_key']}`"
            + (f" [{step['partition']}]" if step.get("partition") else "")
            + f": run {step['run_id'][:8]}, code version {step['code_version']}"
            + "".join(f"; {k} data version {v}" for k, v in step["raw_data_versions"].items())
            for step in card["lineage"]
        ],
    ]
    return "\n".join(lines) + "\n"


def _within_source_lines(within: dict[str, Any], by_source: dict | None) -> list[str]:
    """Healthy vs Alzheimer where no source cue helps: per source holding both classes (per
    slice, and per subject where names give subjects), else the one pooled figure."""
    if not by_source:
        return [
            f"Healthy vs Alzheimer within the Alzheimer source: {_fmt(within['accuracy'])} "
            f"({within['n_images']} images).",
            "",
        ]
    columns = ["n_images", "accuracy", "n_subjects", "subject_accuracy"]
    return [
        "Healthy vs Alzheimer within each source holding both (no source cue can help):",
        "",
        *_table(by_source, columns),
        "",
    ]


def _temperature_note(temperature: float | None) -> str:
    if temperature is None:
        return "probabilities as trained (no temperature scaling)"
    return (
        f"probabilities calibrated by temperature scaling (T = {temperature:.2f}, fitted on "
        "the validation split)"
    )
