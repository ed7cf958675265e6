"""Two configurations on the same cross-validation folds, paired image by image.

    .venv/bin/python benchmarks/cv_compare.py --baseline DIR_A --candidate DIR_B

DIR_A and DIR_B are `benchmarks/cv.py` work folders of the same data, folds and seed (one
shared `--prepared-dir`, say) and two training configurations. On the test images of every
fold both finished, it prints each one's figures (macro-F1, per-class F1, within-source
healthy vs Alzheimer per source, per slice and per subject, ECE, margin over the raw-file
probe, training minutes) and the paired difference candidate - baseline of right answers,
overall, per source and per class, each with a 95% interval over near-duplicate groups. The
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from brain_pipeline.core.classes import TARGET_CLASSES
from brain_pipeline.core.model.cross_validation import held_out_scores
from brain_pipeline.core.model.intervals import group_bootstrap_mean

FIGURES = ("macro_f1", "accuracy", "ece", "raw_probe_accuracy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a benchmarks/cv.py folder")
    parser.add_argument("--candidate", type=Path, required=True, help="another, same folds")
    args = parser.parse_args(argv)
    settings = [_settings(folder, parser) for folder in (args.baseline, args.candidate)]
    shared = ("data_dir", "folds", "seed")
    if any(settings[0].get(key) != settings[1].get(key) for key in shared):
        parser.error(f"the two folders differ in {', '.join(shared)}: not the same folds")
    return args


def _settings(folder: Path, parser: argparse.ArgumentParser) -> dict:
    path = folder / "settings.json"
    if not path.is_file():
        parser.error(f"{folder} holds no settings.json: run benchmarks/cv.py there first")
    return json.loads(path.read_text())


def common_folds(baseline: Path, candidate: Path) -> list[int]:
    """The folds whose result both folders hold."""

    def done(folder: Path) -> set[int]:
        return {int(p.stem.split("_")[1]) for p in folder.glob("fold_*_predictions.parquet")}

    return sorted(done(baseline) & done(candidate))


def pooled(folder: Path, folds: list[int]) -> pd.DataFrame:
    frames = [pd.read_parquet(folder / f"fold_{f}_predictions.parquet") for f in folds]
    return pd.concat(frames, ignore_index=True).sort_values("sha256", ignore_index=True)


def right(predictions: pd.DataFrame) -> np.ndarray:
    columns = [f"p_{c}" for c in TARGET_CLASSES]
    predicted = np.asarray(TARGET_CLASSES)[predictions[columns].to_numpy().argmax(axis=1)]
    return (predicted == predictions["target_class"].to_numpy()).astype(float)


def summary(predictions: pd.DataFrame, folder: Path, folds: list[int]) -> dict:
    scores = held_out_scores(predictions)
    minutes = [
        json.loads((folder / f"fold_{f}.json").read_text())["train_seconds"] / 60 for f in folds
    ]
    return {
        **{key: scores[key] for key in FIGURES},
        **{f"f1_{c}": scores[f"f1_{c}"] for c in TARGET_CLASSES},
        "margin_over_raw_probe": scores["margin_over_raw_probe"],
        "healthy_vs_alzheimer_by_source": scores["healthy_vs_alzheimer_by_source"],
        "train_minutes_per_fold": minutes,
    }


def paired(baseline: pd.DataFrame, candidate: pd.DataFrame) -> dict:
    """Candidate minus baseline right answers on the same images: overall, per source and
    per class, each with its interval over groups."""
    if not (baseline["sha256"].to_numpy() == candidate["sha256"].to_numpy()).all():
        raise SystemExit("the two folders' test images differ: not the same folds")
    difference = right(candidate) - right(baseline)
    groups = baseline["group_id"].to_numpy()
    result = {"overall": group_bootstrap_mean(groups, difference)}
    for column, prefix in (("dataset", "source"), ("target_class", "class")):
        for value in sorted(baseline[column].unique()):
            rows = (baseline[column] == value).to_numpy()
            result[f"{prefix} {value}"] = group_bootstrap_mean(groups[rows], difference[rows])
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    folds = common_folds(args.baseline, args.candidate)
    if not folds:
        raise SystemExit("no fold is finished in both folders yet")
    frames = {name: pooled(getattr(args, name), folds) for name in ("baseline", "candidate")}
    result: dict = {"folds": folds, "n_images": len(frames["baseline"])}
    for name, frame in frames.items():
        result[name] = summary(frame, getattr(args, name), folds)
        print(f"{name}: " + ", ".join(f"{k} {result[name][k]:.3f}" for k in FIGURES), flush=True)
    result["candidate_minus_baseline_right"] = paired(frames["baseline"], frames["candidate"])
    for key, value in result["candidate_minus_baseline_right"].items():
        print(f"  {key}: {value['estimate']:+.3f} [{value['low']:+.3f}, {value['high']:+.3f}]")
    print(json.dumps(result, default=float))


if __name__ == "__main__":
    main()
