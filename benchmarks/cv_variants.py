"""Inference-time variants of the cross-validated models, on the same folds and test images:
test-time augmentation and temperature scaling beside the models as trained.

    .venv/bin/python benchmarks/cv_variants.py --work-dir DIR [--prepared-dir P]

DIR is a `benchmarks/cv.py` work folder (P its `--prepared-dir`, if it was given one);
every fold it finished (model, test predictions) is scored again under each variant, with no
training:

- as trained: the fold's saved predictions;
- flip TTA: the mean of the probabilities of the image and of its mirror image (left-right,
  the flip the training augmentation uses);
- temperature: probabilities sharpened or softened by one temperature per fold, the one of
  lowest log-loss on that fold's validation images, as training does when
  `temperature_scaling` is on (core/model/temperature.py);
- flip TTA + temperature: both, the temperature fitted to the TTA probabilities.

Prints a line per fold and variant, then one JSON object as the last line: per variant the
mean and standard deviation over folds of each figure, and the mean paired change against
"as trained".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from brain_pipeline.core.model.cross_validation import (
    VAL_FRACTION,
    held_out_scores,
    validation_rows,
)
from brain_pipeline.core.model.temperature import fitted_temperature, with_temperature

FIGURES = ("macro_f1", "accuracy", "within_source", "ece", "margin_over_raw_probe")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True, help="a benchmarks/cv.py folder")
    parser.add_argument("--prepared-dir", type=Path, default=None, help="default: --work-dir")
    args = parser.parse_args(argv)
    args.prepared_dir = args.prepared_dir or args.work_dir
    if not (args.prepared_dir / "folds.parquet").exists():
        parser.error(
            f"{args.prepared_dir} holds no folds.parquet: run benchmarks/cv.py there first"
        )
    return args


def _fold_inputs(work: Path, prepared: Path, fold: int):
    """The fold's model, its validation and test tensors and validation labels."""
    import keras

    from brain_pipeline.core.imaging.preprocessing import Preprocessing
    from brain_pipeline.core.model.tensors import tensors_for_rows

    settings = json.loads((work / "settings.json").read_text())
    config = settings["config"]
    preprocessing = Preprocessing(
        config["image_size"], skull_strip=config["skull_strip"], intensity=config["intensity"]
    )
    index = pd.read_parquet(prepared / "folds.parquet")
    roots = _roots(settings["data_dir"])
    tensors, labels = tensors_for_rows(index, roots, preprocessing, prepared / "tensors")
    test = (index["fold"] == fold).to_numpy()
    val = ~test & validation_rows(index)
    model = keras.models.load_model(work / f"fold_{fold}.keras")
    return model, np.asarray(tensors[val]), labels[val], np.asarray(tensors[test])


def _roots(data_dir: str):
    from brain_pipeline.core.data.sources import load_raw_data_config

    return load_raw_data_config(Path(data_dir)).roots


def variants_of_fold(work: Path, prepared: Path, fold: int) -> dict[str, dict]:
    """Each variant's test figures for one fold."""
    from brain_pipeline.core.classes import TARGET_CLASSES
    from brain_pipeline.core.model.training import predict_probabilities

    model, val_x, val_y, test_x = _fold_inputs(work, prepared, fold)
    saved = pd.read_parquet(work / f"fold_{fold}_predictions.parquet")
    columns = [f"p_{c}" for c in TARGET_CLASSES]

    def with_mirror(x, plain):
        """The mean of the plain probabilities and those of the mirrored images."""
        return (plain + predict_probabilities(model, x[:, :, ::-1])) / 2

    val_plain = predict_probabilities(model, val_x)
    test_plain = saved[columns].to_numpy()  # the fold's own test predictions
    val_tta, test_tta = with_mirror(val_x, val_plain), with_mirror(test_x, test_plain)
    t_plain, t_tta = fitted_temperature(val_plain, val_y), fitted_temperature(val_tta, val_y)
    probabilities = {
        "as trained": test_plain,
        "flip TTA": test_tta,
        "temperature": with_temperature(test_plain, t_plain),
        "flip TTA + temperature": with_temperature(test_tta, t_tta),
    }
    result = {}
    for name, values in probabilities.items():
        frame = saved.copy()
        frame[columns] = values
        scores = held_out_scores(frame)
        scores["margin_over_raw_probe"] = scores["margin_over_raw_probe"]["estimate"]
        result[name] = {key: scores[key] for key in FIGURES}
    result["temperature"]["temperature"] = t_plain
    result["flip TTA + temperature"]["temperature"] = t_tta
    return result


def summarise(per_fold: dict[int, dict[str, dict]]) -> dict:
    """Mean and spread of each figure per variant, and its mean paired change."""
    summary: dict = {"folds": sorted(per_fold), "validation_fraction": VAL_FRACTION}
    for variant in next(iter(per_fold.values())):
        block = {}
        for key in FIGURES:
            values = np.array([fold[variant][key] for fold in per_fold.values()], dtype=float)
            base = np.array([fold["as trained"][key] for fold in per_fold.values()], dtype=float)
            block[f"{key}_mean"] = float(values.mean())
            block[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
            block[f"{key}_change"] = float((values - base).mean())
        summary[variant] = block
    return summary


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    folds = sorted(int(path.stem.split("_")[1]) for path in args.work_dir.glob("fold_*.keras"))
    if not folds:
        raise SystemExit(f"{args.work_dir} holds no fold_N.keras yet")
    per_fold = {}
    for fold in folds:
        per_fold[fold] = variants_of_fold(args.work_dir, args.prepared_dir, fold)
        for variant, figures in per_fold[fold].items():
            line = ", ".join(f"{k} {v:.3f}" for k, v in figures.items())
            print(f"fold {fold}, {variant}: {line}", flush=True)
    print(json.dumps(summarise(per_fold)))


if __name__ == "__main__":
    main()
