"""Measuring training runs: each phase in a clean process, and time to a validation score.

The benchmarks (benchmarks/train.py, cv.py) and experiments use these to time training
without one run's memory or TensorFlow state leaking into the next.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def in_child(function, *args):
    """Run one phase in a fresh process, so memory and TensorFlow state start clean."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def run_in_folder(folder: Path | None, work: Callable[[Path], dict], prefix: str) -> dict:
    """``work(folder)``, creating ``folder``; without one, in a temporary folder removed after."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        return work(folder)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        return work(Path(tmp))


class EpochClock:
    """Wall time and validation macro-F1 at the end of every epoch (`callback()` records)."""

    def __init__(self, val_x, val_y, n_classes: int, label: str) -> None:
        self.val_x, self.val_y, self.n_classes, self.label = val_x, val_y, n_classes, label
        self.started = time.perf_counter()
        self.points: list[dict] = []

    def record(self, model) -> float:
        from sklearn.metrics import f1_score

        predicted = []
        for start in range(0, len(self.val_x), 32):
            batch = np.asarray(self.val_x[start : start + 32], dtype=np.float32)
            predicted.append(model.predict_on_batch(batch).argmax(axis=1))
        f1 = float(
            f1_score(
                self.val_y,
                np.concatenate(predicted),
                labels=list(range(self.n_classes)),
                average="macro",
                zero_division=0,
            )
        )
        self.points.append({"seconds": time.perf_counter() - self.started, "val_macro_f1": f1})
        return f1

    def first_reached(self, macro_f1: float) -> float | None:
        """Seconds from the start until validation macro-F1 first reached `macro_f1`."""
        return next((p["seconds"] for p in self.points if p["val_macro_f1"] >= macro_f1), None)

    def callback(self):
        import keras

        clock = self

        class Clock(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                f1 = clock.record(self.model)
                print(
                    f"  {clock.label} epoch {epoch + 1}: val macro-F1 {f1:.3f} "
                    f"at {clock.points[-1]['seconds']:.0f} s",
                    flush=True,
                )

        return Clock()
