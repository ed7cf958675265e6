"""Cold vs unchanged "materialize all": how much a re-run on unchanged data costs.

    .venv/bin/python benchmarks/memoisation.py [--data-dir DIR]

Runs the main command (`brain-pipeline materialize`) twice in one process, on a fresh Dagster
instance and a fresh artifacts folder: once cold, once with nothing changed (every asset
should reuse its artifact). Prints both wall times; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

import dagster as dg

from brain_pipeline.apps.cli import main as brain_pipeline_cli
from brain_pipeline.core.locations import ARTIFACTS_DIR_ENV, DATA_DIR_ENV, default_data_dir


def materialize_all(label: str) -> float:
    """One `brain-pipeline materialize`, its output kept unless it fails; wall seconds."""
    printed = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        code = brain_pipeline_cli(["materialize"])
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"{label} run failed:\n{printed.getvalue()}")
    print(f"{label:>9} materialize all: {seconds:7.2f} s", flush=True)
    return seconds


def cache_hits() -> dict[str, bool]:
    """Per asset of the instance, whether its latest materialization reused an artifact."""
    hits = {}
    with dg.DagsterInstance.get() as instance:
        for key in instance.get_asset_keys():
            event = instance.get_latest_materialization_event(key)
            metadata = event.asset_materialization.metadata if event else {}
            if "cache_hit" in metadata:
                hits[key.to_user_string()] = bool(metadata["cache_hit"].value)
    return hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["DAGSTER_HOME"] = str(Path(scratch) / "dagster")
        os.environ[DATA_DIR_ENV] = str(args.data_dir.resolve())
        os.environ[ARTIFACTS_DIR_ENV] = str(Path(scratch) / "artifacts")
        timings = {label: materialize_all(label) for label in ("cold", "unchanged")}
        # The champion decision and the model card are decided anew on every run.
        hits = cache_hits()
    print(f"cache hits on the unchanged run: {sum(hits.values())}/{len(hits)}")
    print(
        json.dumps(
            {
                "data_dir": str(args.data_dir),
                "cold_s": round(timings["cold"], 2),
                "unchanged_s": round(timings["unchanged"], 2),
                "unchanged_over_cold": round(timings["unchanged"] / timings["cold"], 4),
                "cache_hits": hits,
            }
        )
    )


if __name__ == "__main__":
    main()
