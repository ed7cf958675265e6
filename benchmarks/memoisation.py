"""Cold vs unchanged "materialize all": how much a re-run on unchanged data costs.

    .venv/bin/python benchmarks/memoisation.py [--data-dir DIR]

Runs the full_pipeline job twice in one process, on a fresh Dagster instance and a fresh
artifacts folder: once cold, once with nothing changed (every asset should reuse its
artifact). Prints both wall times; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import dagster as dg

from brain_pipeline.core.locations import default_data_dir
from brain_pipeline.core.model.sweep import load_sweep
from brain_pipeline.definitions import FULL_PIPELINE_JOB, build_definitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, dg.instance_for_test() as instance:
        defs = build_definitions(data_dir=args.data_dir, artifacts_dir=Path(scratch) / "artifacts")
        job = defs.resolve_job_def(FULL_PIPELINE_JOB)
        timings = {}
        for label in ("cold", "unchanged"):
            started = time.perf_counter()
            result = job.execute_in_process(instance=instance, partition_key=load_sweep().default)
            timings[label] = time.perf_counter() - started
            assert result.success, f"{label} run failed"
            print(f"{label:>9} materialize all: {timings[label]:7.2f} s")
        metadata = {
            key.to_user_string(): instance.get_latest_materialization_event(
                key
            ).asset_materialization.metadata
            for key in defs.resolve_asset_graph().materializable_asset_keys
        }
        # The champion decision and the model card are decided anew on every run.
        hits = {k: bool(m["cache_hit"].value) for k, m in metadata.items() if "cache_hit" in m}
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
