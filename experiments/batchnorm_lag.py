"""Why did validation accuracy swing? BatchNorm's lagging moving statistics: recompute them.

Answered (docs/decisions.md, "Precise BatchNorm statistics"): on the embedded data, epochs 6
to 25, validation accuracy ranged 0.367-0.751 with the moving statistics and 0.651-0.746 with
statistics recomputed at the same weights; a real-data model rescored with recomputed
statistics gained 0.007-0.015 test accuracy. Training now recomputes them
(`precise_bn_batches`).

Without --model: trains the default model on --data-dir with Keras's moving averages alone
(precise_bn_batches=0) and, after every epoch, prints the validation accuracy twice: with the
moving statistics the validation pass used, and with statistics recomputed at the same
weights over training batches (core.training.recompute_batchnorm_statistics). The moving
statistics are put back after each probe (its forward passes do advance the random
augmentation stream, so the run is not bit-identical to one without the probe).

With --model PATH (a trained model.keras): its validation and test accuracy with the stored
statistics, then recomputed over 10 training batches for three seeds, and over 100.

    .venv/bin/python experiments/batchnorm_lag.py [--data-dir data] [--epochs 30]
    .venv/bin/python experiments/batchnorm_lag.py --data-dir /path/to/datasets \\
        --model ARTIFACTS/trained_model/VERSION/model.keras
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras
import numpy as np

from brain_pipeline.core.classes import TARGET_CLASSES
from brain_pipeline.core.imaging.preprocessing import Preprocessing
from brain_pipeline.core.model import evaluation
from brain_pipeline.core.model.training import (
    TrainingConfig,
    batchnorm_layers,
    predict_probabilities,
    recompute_batchnorm_statistics,
    train_classifier,
)

REPO = Path(__file__).resolve().parents[1]
from brain_pipeline.core.data.prepared import prepared_splits  # noqa: E402
from brain_pipeline.core.model.measurement import run_in_folder  # noqa: E402
from brain_pipeline.core.model.tensors import split_tensors  # noqa: E402


def _accuracy(model: keras.Model, tensors: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predict_probabilities(model, tensors).argmax(axis=1) == labels))


def _statistics(model: keras.Model) -> list:
    return [
        variable
        for layer in batchnorm_layers(model)
        for variable in (layer.moving_mean, layer.moving_variance)
    ]


class _LagProbe(keras.callbacks.Callback):
    def __init__(self, train_x, val_x, val_y, batch_size: int) -> None:
        super().__init__()
        self._train_x, self._val_x, self._val_y = train_x, val_x, val_y
        self._batch_size = batch_size
        self.rows: list[dict] = []

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        moving = _accuracy(self.model, self._val_x, self._val_y)
        saved = [variable.numpy() for variable in _statistics(self.model)]
        recompute_batchnorm_statistics(
            self.model,
            self._train_x,
            batch_size=self._batch_size,
            batches=10,
            rng=np.random.default_rng(epoch),
        )
        recomputed = _accuracy(self.model, self._val_x, self._val_y)
        for variable, value in zip(_statistics(self.model), saved, strict=True):
            variable.assign(value)
        row = {"epoch": epoch + 1, "val_moving": moving, "val_recomputed": recomputed}
        row["train_accuracy"] = float((logs or {}).get("accuracy", float("nan")))
        self.rows.append(row)
        print(
            f"epoch {epoch + 1}: validation accuracy {moving:.3f} with moving statistics, "
            f"{recomputed:.3f} recomputed (training {row['train_accuracy']:.3f})",
            flush=True,
        )


def _spread(values: list[float]) -> str:
    return f"{min(values):.3f} to {max(values):.3f}"


def train_and_probe(args: argparse.Namespace, cache: Path) -> dict:
    raw, table = prepared_splits(args.data_dir)
    config = TrainingConfig(epochs=args.epochs, precise_bn_batches=0)
    _, train_x, train_y = split_tensors(raw, table, "train", config.preprocessing, cache)
    _, val_x, val_y = split_tensors(raw, table, "val", config.preprocessing, cache)
    probe = _LagProbe(train_x, val_x, val_y, config.batch_size)
    result = train_classifier(
        train_x,
        train_y,
        val_x,
        val_y,
        config,
        class_names=TARGET_CLASSES,
        resume_dir=cache / "resume",
        log=lambda _: None,
        extra_callbacks=[probe],
    )
    after_warmup = [row for row in probe.rows if row["epoch"] > config.warmup_epochs]
    summary = {
        "epochs_run": result.epochs_run,
        "val_moving_range_after_warmup": _spread([r["val_moving"] for r in after_warmup]),
        "val_recomputed_range_after_warmup": _spread([r["val_recomputed"] for r in after_warmup]),
        "epochs": probe.rows,
    }
    print(
        f"after epoch {config.warmup_epochs}: moving {summary['val_moving_range_after_warmup']}, "
        f"recomputed {summary['val_recomputed_range_after_warmup']}"
    )
    return summary


def rescore_model(args: argparse.Namespace, cache: Path) -> dict:
    model = keras.models.load_model(args.model)
    preprocessing = Preprocessing.for_model(args.model, model.input_shape[1])
    raw, table = prepared_splits(args.data_dir)
    tensors = {
        split: split_tensors(raw, table, split, preprocessing, cache)[1:]
        for split in ("train", "val", "test")
    }

    def scores(label: str) -> dict:
        row = {"statistics": label}
        for split in ("val", "test"):
            x, y = tensors[split]
            metrics = evaluation.classification_metrics(
                y, predict_probabilities(model, x), TARGET_CLASSES
            )
            row[f"{split}_accuracy"] = round(metrics["accuracy"], 4)
            row[f"{split}_macro_f1"] = round(metrics["f1_macro"], 4)
        print(json.dumps(row), flush=True)
        return row

    rows = [scores("stored")]
    train_x = tensors["train"][0]
    for label, seed, batches in [
        ("10 batches, seed 0", 0, 10),
        ("10 batches, seed 1", 1, 10),
        ("10 batches, seed 2", 2, 10),
        ("100 batches, seed 0", 0, 100),
    ]:
        recompute_batchnorm_statistics(
            model, train_x, batch_size=32, batches=batches, rng=np.random.default_rng(seed)
        )
        rows.append(scores(label))
    return {"model": str(args.model), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / "data")
    parser.add_argument("--epochs", type=int, default=TrainingConfig().epochs)
    parser.add_argument("--model", type=Path, default=None, help="rescore this model.keras")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: a temp dir")
    args = parser.parse_args()
    work = rescore_model if args.model else train_and_probe
    summary = run_in_folder(args.cache_dir, lambda folder: work(args, folder), "bp_bnlag_")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
