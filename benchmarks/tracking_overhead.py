"""What energy tracking costs: the same training with and without codecarbon, one run.

    .venv/bin/python benchmarks/tracking_overhead.py [--data-dir DIR] [--epochs 8] [--repeats 2]

Builds the index and splits of the given raw data with the core functions, caches the
tensors once, then trains the default model repeatedly, alternating untracked and tracked
runs (so drift in machine load hits both alike), same seed and data. Prints each timing; the
last line is one JSON object with the overhead in percent of the untracked median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from brain_pipeline.core.classes import TARGET_CLASSES
from brain_pipeline.core.data.prepared import prepared_splits
from brain_pipeline.core.emissions import TrackerSettings, track_step
from brain_pipeline.core.locations import default_data_dir
from brain_pipeline.core.model.tensors import split_tensors
from brain_pipeline.core.model.training import TrainingConfig, train_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    raw, table = prepared_splits(args.data_dir)
    # Early stopping off (warm-up past the last epoch): every run trains the same epochs.
    config = TrainingConfig(epochs=args.epochs, warmup_epochs=args.epochs)

    with tempfile.TemporaryDirectory() as scratch:
        _, train_x, train_y = split_tensors(raw, table, "train", config.preprocessing, scratch)
        _, val_x, val_y = split_tensors(raw, table, "val", config.preprocessing, scratch)

        def train(run: int) -> float:
            started = time.perf_counter()
            train_classifier(
                train_x,
                train_y,
                val_x,
                val_y,
                config,
                class_names=TARGET_CLASSES,
                resume_dir=Path(scratch) / f"resume{run}",
                log=lambda _: None,
            )
            return time.perf_counter() - started

        # codecarbon's first start in a process imports and probes the hardware once (about a
        # second); in a pipeline run the first tracked asset pays it. Timed apart from training.
        started = time.perf_counter()
        with track_step(TrackerSettings(), asset_key="warm_up", run_id="warm_up"):
            pass
        first_start_s = time.perf_counter() - started
        print(f"codecarbon first start + stop in this process: {first_start_s:.2f} s")

        untracked, tracked, records = [], [], []
        for repeat in range(args.repeats):
            untracked.append(train(2 * repeat))
            print(f"untracked: {untracked[-1]:.2f} s")
            with track_step(
                TrackerSettings(), asset_key="trained_model", run_id=f"bench{repeat}"
            ) as m:
                seconds = train(2 * repeat + 1)
            # The tracked figure includes starting and stopping the tracker.
            tracked.append(m.record["duration_s"])
            records.append(m.record)
            print(f"  tracked: {tracked[-1]:.2f} s (training alone {seconds:.2f} s)")

    base, with_tracker = statistics.median(untracked), statistics.median(tracked)
    print(
        json.dumps(
            {
                "n_train": int(len(train_y)),
                "epochs": args.epochs,
                "untracked_s": [round(t, 2) for t in untracked],
                "tracked_s": [round(t, 2) for t in tracked],
                "overhead_percent": round(100 * (with_tracker - base) / base, 2),
                "first_start_s_once_per_process": round(first_start_s, 2),
                "energy_kwh": records[-1]["energy_kwh"],
                "emissions_kg": records[-1]["emissions_kg"],
                "measurement_mode": records[-1]["measurement_mode"],
            }
        )
    )


if __name__ == "__main__":
    main()
