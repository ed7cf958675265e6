"""`brain-pipeline models`: every evaluated model version with its status, and promotion by
hand. The versions come from the Dagster instance's event log (as the leaderboard asset's
do), the statuses from the promotion history."""

from __future__ import annotations

import pandas as pd


def _instance_and_storage():
    import dagster as dg

    from brain_pipeline.apps.console import prepare_home
    from brain_pipeline.core.locations import default_artifacts_dir, default_data_dir
    from brain_pipeline.defs.resources import PipelineStorage

    prepare_home()
    storage = PipelineStorage(
        data_dir=str(default_data_dir()), artifacts_dir=str(default_artifacts_dir())
    )
    return dg.DagsterInstance.get(), storage


def models_table() -> pd.DataFrame:
    """The leaderboard with a status per version: champion, retired (served before) or
    challenger (evaluated, never served)."""
    from brain_pipeline.defs.models import current_leaderboard, external_summary, promotion_history

    instance, storage = _instance_and_storage()
    with instance:
        board = current_leaderboard(instance)
    board["external"] = [external_summary(storage, v) for v in board["model_version"]]
    statuses = promotion_history(storage).statuses()
    board.insert(1, "status", [statuses.get(v, "challenger") for v in board["model_version"]])
    return board


def render_models(table: pd.DataFrame) -> str:
    from brain_pipeline.defs.models import BOARD_COLUMNS

    if table.empty:
        return "no evaluated model version yet: run `brain-pipeline materialize`"
    columns = [BOARD_COLUMNS[0], "status", *BOARD_COLUMNS[1:]]
    shown = (
        table[columns]
        # The long external scores are in `--json` and the leaderboard asset.
        .drop(columns=["gain_f1_per_g_co2", "external"])
        .rename(
            columns={
                "within_source_healthy_vs_alzheimer": "within_source",
                "f1_macro_low": "f1_low",
                "f1_macro_high": "f1_high",
                "expected_calibration_error": "ece",
                "on_pareto_front": "pareto",
            }
        )
    )
    return shown.to_string(index=False, float_format=lambda x: f"{x:.4g}")


def promote(version: str) -> dict:
    from brain_pipeline.defs.models import record_manual_promotion

    instance, storage = _instance_and_storage()
    with instance:
        return record_manual_promotion(instance, storage, version)
