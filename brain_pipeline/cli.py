"""`brain-pipeline`: synthesise data, run the pipeline, predict, explain, trace lineage."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _synth(args: argparse.Namespace) -> int:
    from brain_pipeline.core.synthetic import synthesize_datasets

    started = time.perf_counter()
    summary = synthesize_datasets(
        Path(args.out),
        seed=args.seed,
        difficulty=args.difficulty,
        images_per_label=args.images_per_label,
        image_scale=args.image_scale,
    )
    for dataset, counts in summary.counts.items():
        print(f"{dataset}: " + ", ".join(f"{label}={n}" for label, n in sorted(counts.items())))
    print(
        f"wrote {summary.n_images} images and {summary.n_lesion_masks} lesion masks under "
        f"{summary.root} in {time.perf_counter() - started:.1f} s"
    )
    return 0


def _materialize(args: argparse.Namespace) -> int:
    """Run the full_pipeline job on a persistent Dagster instance (history kept for the UI)."""
    home = Path(os.environ.get("DAGSTER_HOME") or "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg

    from brain_pipeline.definitions import FULL_PIPELINE_JOB, defs

    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def(FULL_PIPELINE_JOB).execute_in_process(
            instance=instance, raise_on_error=False
        )
        seconds = time.perf_counter() - started
        if not result.success:
            print(
                f"run {result.run_id} FAILED after {seconds:.0f} s; see the log above",
                file=sys.stderr,
            )
            return 1
        print(f"\nrun {result.run_id} succeeded in {seconds:.0f} s (DAGSTER_HOME={home})")
        for key in defs.resolve_asset_graph().materializable_asset_keys:
            event = instance.get_latest_materialization_event(key)
            metadata = event.asset_materialization.metadata if event else {}
            path = metadata.get("path")
            headline = {
                name: metadata[name].value
                for name in (
                    "n_files",
                    "n_rows",
                    "n_test",
                    "val_accuracy",
                    "accuracy",
                    "f1_macro",
                    "energy_kwh",
                )
                if name in metadata
            }
            print(f"  {key.to_user_string():<18} {path.value if path else ''}  {headline}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="brain-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="write synthetic MRI phantoms in Kaggle layouts")
    synth.add_argument("--out", required=True, help="folder to create the datasets in")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--difficulty", type=float, default=0.5, help="0 (easy) .. 1 (hard)")
    synth.add_argument("--images-per-label", type=int, default=40)
    synth.add_argument("--image-scale", type=float, default=1.0, help="scale every image size")
    synth.set_defaults(handler=_synth)

    run = commands.add_parser(
        "materialize", help="observe the raw data and materialize every asset (full_pipeline)"
    )
    run.set_defaults(handler=_materialize)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"brain-pipeline {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
