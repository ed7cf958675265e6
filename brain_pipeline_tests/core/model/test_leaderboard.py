"""The leaderboard: one row per model version, the Pareto front, macro-F1 per extra gram."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from brain_pipeline.core.model.leaderboard import COLUMNS, leaderboard_table, pareto_front


def entry(version: str, f1: float, co2_g: float) -> dict:
    return {
        "model_version": version,
        "configuration": version.split("@")[0],
        **{c: 0 for c in COLUMNS if c not in ("model_version", "configuration")},
        "f1_macro": f1,
        "co2_g": co2_g,
    }


def test_the_front_keeps_only_models_nothing_cheaper_beats() -> None:
    cost = np.array([1.0, 2.0, 3.0, 4.0, np.nan, 2.0])
    quality = np.array([0.5, 0.7, 0.6, 0.8, 0.99, 0.7])
    # 3.0 is dominated by 2.0 (cheaper, better); the NaN cost is unmeasured; of two equal
    # models the first is on the front.
    assert pareto_front(cost, quality).tolist() == [True, True, False, True, False, False]


def test_gain_per_gram_is_measured_from_the_cheapest_model_on_the_front() -> None:
    table = leaderboard_table(
        [entry("a@1", 0.70, 10.0), entry("b@1", 0.80, 30.0), entry("c@1", 0.75, 50.0)]
    )
    assert table["model_version"].tolist() == ["b@1", "c@1", "a@1"]  # best macro-F1 first
    rows = table.set_index("model_version")
    assert rows["on_pareto_front"].to_dict() == {"a@1": True, "b@1": True, "c@1": False}
    assert math.isnan(rows.loc["a@1", "gain_f1_per_g_co2"])  # the reference itself
    assert rows.loc["b@1", "gain_f1_per_g_co2"] == pytest.approx(0.10 / 20.0)
    assert rows.loc["c@1", "gain_f1_per_g_co2"] == pytest.approx(0.05 / 40.0)


def test_one_row_per_version_and_an_empty_board_has_the_columns() -> None:
    table = leaderboard_table([entry("a@1", 0.5, 1.0), entry("a@1", 0.6, 1.0)])
    assert len(table) == 1 and table["f1_macro"].iloc[0] == 0.6  # the newest evaluation
    empty = leaderboard_table([])
    assert isinstance(empty, pd.DataFrame) and list(empty.columns) == COLUMNS
