"""Every evaluated model version side by side: quality, cost, and what extra energy bought.

A model version is one trained_model folder (`<configuration>@<time>_<run>`). Its row is read
from the files the pipeline wrote: the evaluation's metrics.json and provenance.json, which
names the model folder, whose training.json and emissions.json give the configuration,
training time and energy. Nothing here asks Dagster; the caller says which evaluation folders
exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brain_pipeline.core import artifact_names
from brain_pipeline.core.artifacts import read_json

COLUMNS = [
    "model_version",
    "configuration",
    "architecture",
    "image_size",
    "epochs_run",
    "trained_at",
    "f1_macro",
    "f1_macro_low",  # 95% interval over test groups (NaN for evaluations without one)
    "f1_macro_high",
    "accuracy",
    "within_source_healthy_vs_alzheimer",
    "expected_calibration_error",
    "n_test_images",
    "train_seconds",
    "energy_kwh",
    "co2_g",
    "on_pareto_front",
    "gain_f1_per_g_co2",
    "model_path",
    "evaluation_path",
]


def model_version_of(model_folder: Path) -> str:
    """`<configuration>@<folder>` for a trained_model folder `.../<configuration>/<folder>`."""
    folder = Path(model_folder)
    return f"{folder.parent.name}@{folder.name}"


def _interval_of(metrics: dict[str, Any], name: str) -> dict[str, float]:
    """`<name>_low`, `<name>_high` of the group bootstrap (NaN for evaluations without it)."""
    interval = (metrics.get("intervals") or {}).get("metrics", {}).get(name, {})
    return {
        f"{name}_low": interval.get("low", float("nan")),
        f"{name}_high": interval.get("high", float("nan")),
    }


def _energy(folder: Path) -> tuple[float, float]:
    """(kWh, g CO2eq) of a step folder's emissions.json; NaN where it was not measured."""
    path = folder / artifact_names.EMISSIONS
    record = read_json(path) if path.is_file() else {}
    if not record.get("measured"):
        return float("nan"), float("nan")
    return float(record["energy_kwh"]), 1000.0 * float(record["emissions_kg"])


def model_entry(evaluation_folder: Path) -> dict[str, Any]:
    """One leaderboard row from a model_evaluation folder and the model folder it names."""
    evaluation_folder = Path(evaluation_folder)
    metrics = read_json(evaluation_folder / artifact_names.METRICS)
    provenance = read_json(evaluation_folder / artifact_names.PROVENANCE)
    (model_path,) = [
        Path(u["path"]) for u in provenance["upstream"] if u["asset_key"] == "trained_model"
    ]
    training = read_json(model_path.parent / artifact_names.TRAINING)
    train_kwh, train_g = _energy(model_path.parent)
    eval_kwh, eval_g = _energy(evaluation_folder)
    return {
        "model_version": training["model_version"],
        "configuration": training.get("configuration", ""),
        "architecture": training["config"]["architecture"],
        "image_size": training["config"]["image_size"],
        "epochs_run": training["epochs_run"],
        "trained_at": pd.Timestamp(model_path.stat().st_mtime, unit="s", tz="UTC"),
        "f1_macro": metrics["f1_macro"],
        **_interval_of(metrics, "f1_macro"),
        "accuracy": metrics["accuracy"],
        "within_source_healthy_vs_alzheimer": metrics["within_source_healthy_vs_alzheimer"][
            "accuracy"
        ],
        "expected_calibration_error": metrics["expected_calibration_error"],
        "n_test_images": metrics["n_images"],
        "train_seconds": training["train_seconds"],
        # Training (with its preprocessing) and the evaluation: what this version cost.
        "energy_kwh": train_kwh + eval_kwh,
        "co2_g": train_g + eval_g,
        "model_path": str(model_path),
        "evaluation_path": str(evaluation_folder / artifact_names.METRICS),
    }


def pareto_front(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """True where no other model is at most as costly and strictly better, or cheaper and at
    least as good. NaN costs are never on the front."""
    cost, quality = np.asarray(cost, float), np.asarray(quality, float)
    on_front = np.zeros(len(cost), dtype=bool)
    best = -np.inf
    # Cheapest first; among equal costs, the best first.
    for i in np.lexsort((-quality, cost)):
        if np.isnan(cost[i]):
            continue
        if quality[i] > best:
            on_front[i], best = True, quality[i]
    return on_front


def leaderboard_table(entries: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per model version (the newest evaluation of each), best macro-F1 first, with
    the Pareto front of macro-F1 against CO2 and each model's gain in macro-F1 per extra gram
    of CO2eq over the cheapest model on the front (NaN for that model itself)."""
    table = pd.DataFrame(list(entries))
    if table.empty:
        return pd.DataFrame(columns=COLUMNS)
    table = table.drop_duplicates("model_version", keep="last").reset_index(drop=True)
    table["on_pareto_front"] = pareto_front(table["co2_g"], table["f1_macro"])
    table["gain_f1_per_g_co2"] = np.nan
    front = table[table["on_pareto_front"]]
    if len(front):
        cheapest = front.loc[front["co2_g"].idxmin()]
        extra_g = table["co2_g"] - cheapest["co2_g"]
        gain = (table["f1_macro"] - cheapest["f1_macro"]) / extra_g.where(extra_g > 0)
        table["gain_f1_per_g_co2"] = gain
    table = table.sort_values(["f1_macro", "co2_g"], ascending=[False, True])
    return table[COLUMNS].reset_index(drop=True)
