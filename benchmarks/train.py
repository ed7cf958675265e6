"""Training benchmark: streaming input, memory, speed against the study's network, accuracy.

    .venv/bin/python benchmarks/train.py --data-dir ../shared/datasets [--seed-cap-min 20]

One run, four phases, each phase in a fresh process (so its peak memory is its own):

1. prepare - manifest, balanced index and leakage-free splits with the pipeline's defaults;
   tensors cached at the default preprocessing (not timed: the pipeline caches them once).
2. throughput - the default model fed by the streaming pipeline (tf.data over the
   memory-mapped tensor cache) and by an in-memory float32 array on the same images: one
   model per input, one timed epoch of each per round, the order swapped every round
   (`--throughput-rounds`), after an untimed warm-up (each model's first epoch, which
   traces the graph, is left out). `streaming_vs_inmemory` = median streaming / median
   in-memory images/s; `streaming_vs_inmemory_paired` = median of the rounds' ratios.
3. default - a full training with the default config on all of train (early stopping on
   val), the validation macro-F1 and wall time after every epoch, then the test split:
   accuracy, macro-F1, per class, per source, within-source healthy vs Alzheimer, and the
   trivial-statistics probe on the preprocessed tensors of the same splits. `peak_rss_gb` is
   this process's peak resident memory.
4. seed - the study's `seed_cnn` at 512x512x3 (grayscale repeated into three channels, as the
   study fed grayscale scans as RGB), the same optimiser, batch size and class weights, with a
   validation after every `--seed-chunk-steps` steps and its wall time capped at
   `--seed-cap-min`. `speedup_vs_seed` = time for seed_cnn to reach its best validation
   macro-F1 / time for the default run to first reach that same figure.

Validation time counts in both runs' clocks. Prints progress, then one JSON object as the
last line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / "data")
    parser.add_argument("--work-dir", type=Path, default=None, help="tensor caches; default temp")
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's")
    parser.add_argument("--throughput-images", type=int, default=2048)
    parser.add_argument("--throughput-rounds", type=int, default=9)
    parser.add_argument("--seed-image-size", type=int, default=512)
    parser.add_argument("--seed-cap-min", type=float, default=20.0)
    parser.add_argument("--seed-chunk-steps", type=int, default=40)
    parser.add_argument("--skip-seed", action="store_true")
    return parser.parse_args(argv)


def _peak_rss_gb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _in_child(function, *args):
    """Run one phase in a fresh process, so memory and TensorFlow state start clean."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


SPLITS_FILE = "splits.parquet"


def _splits(args_dict: dict):
    """The raw-data config and the split table that the prepare phase wrote for this run."""
    import pandas as pd

    from brain_pipeline.core.data.sources import load_raw_data_config

    table = pd.read_parquet(Path(args_dict["work_dir"]) / SPLITS_FILE)
    return load_raw_data_config(args_dict["data_dir"]), table


def _load(args_dict: dict):
    from brain_pipeline.core.model.training import TrainingConfig

    from benchdata import split_tensors

    args = argparse.Namespace(**args_dict)
    config = TrainingConfig() if args.epochs is None else TrainingConfig(epochs=args.epochs)
    raw, table = _splits(args_dict)
    cache = Path(args.work_dir)
    parts = {
        split: split_tensors(raw, table, split, config.preprocessing, cache)
        for split in ("train", "val", "test")
    }
    return config, table, parts


def prepare(args_dict: dict) -> dict:
    """Manifest, index and splits once for all phases (written to the work folder)."""
    from benchdata import prepared_splits

    started = time.perf_counter()
    _, table = prepared_splits(args_dict["data_dir"])
    table.to_parquet(Path(args_dict["work_dir"]) / SPLITS_FILE)
    _, table, parts = _load(args_dict)
    counts = {split: int(len(frame)) for split, (frame, _, _) in parts.items()}
    by_class = table.groupby(["split", "target_class"]).size().unstack().to_dict(orient="index")
    return {
        "split_sizes": counts,
        "split_class_counts": by_class,
        "prepare_seconds": time.perf_counter() - started,
    }


class _EpochClock:
    """Wall time and validation macro-F1 at the end of every epoch (or chunk of steps)."""

    def __init__(self, val_x, val_y, n_classes: int, as_rgb: bool = False) -> None:
        self.val_x, self.val_y, self.n_classes, self.as_rgb = val_x, val_y, n_classes, as_rgb
        self.started = time.perf_counter()
        self.points: list[dict] = []

    def record(self, model) -> float:
        import numpy as np
        from sklearn.metrics import f1_score

        predicted = []
        for start in range(0, len(self.val_x), 32):
            batch = np.asarray(self.val_x[start : start + 32], dtype=np.float32)
            if self.as_rgb:
                batch = np.repeat(batch, 3, axis=-1)
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


def throughput(args_dict: dict) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from brain_pipeline.core.data.sources import TARGET_CLASSES
    from brain_pipeline.core.model.architectures import build_model
    from brain_pipeline.core.model.inputs import batch_stream

    config, _, parts = _load(args_dict)
    _, train_x, train_y = parts["train"]
    n = min(args_dict["throughput_images"], len(train_x))
    n_classes = len(TARGET_CLASSES)
    subset_x, subset_y = train_x[:n], train_y[:n]

    def streaming():
        return batch_stream(
            subset_x, subset_y, n_classes, batch_size=config.batch_size, shuffle=True, seed=0
        )

    def in_memory():
        array = np.asarray(subset_x, dtype=np.float32)  # the whole subset in RAM
        one_hot = np.eye(n_classes, dtype=np.float32)[subset_y]
        data = tf.data.Dataset.from_tensor_slices((array, one_hot))
        return data.shuffle(len(array), seed=0).batch(config.batch_size).prefetch(2)

    def trainer(make_input):
        """A fresh default model and its input; each call of the result trains one epoch
        and returns its images/s."""
        keras.utils.set_random_seed(0)
        model = build_model(
            config.architecture,
            image_size=config.image_size,
            n_classes=n_classes,
            augmentation=config.augmentation,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate), loss="categorical_crossentropy"
        )
        data = make_input()
        model.fit(data, epochs=1, verbose=0)  # traces the graph; not timed

        def epoch() -> float:
            started = time.perf_counter()
            model.fit(data, epochs=1, verbose=0)
            return n / (time.perf_counter() - started)

        return epoch

    # A throw-away epoch first: the first model in a process is slower (allocator, oneDNN
    # primitive caches), which would penalise whichever input went first.
    trainer(in_memory)()
    epochs = {"streaming": trainer(streaming), "in-memory": trainer(in_memory)}
    # One epoch of each per round, the order swapped every round. This machine's speed
    # jumps between levels that last tens of seconds (a 2-epoch run lands at 50, 67 or 100
    # img/s whatever its input), so short alternating samples and the median of many are
    # what tells the inputs apart.
    rounds = []
    for round_index in range(args_dict["throughput_rounds"]):
        names = list(epochs)[:: 1 - 2 * (round_index % 2)]
        rates = {name: epochs[name]() for name in names}
        print(
            f"  round {round_index + 1}: streaming {rates['streaming']:.1f} img/s, "
            f"in-memory {rates['in-memory']:.1f} img/s",
            flush=True,
        )
        rounds.append((rates["streaming"], rates["in-memory"]))
    stream_rates, memory_rates = (np.array(r) for r in zip(*rounds, strict=True))
    return {
        "streaming_images_per_s": float(np.median(stream_rates)),
        "inmemory_images_per_s": float(np.median(memory_rates)),
        "streaming_vs_inmemory": float(np.median(stream_rates) / np.median(memory_rates)),
        # Each round's two epochs ran back to back: the median of their ratios.
        "streaming_vs_inmemory_paired": float(np.median(stream_rates / memory_rates)),
        "throughput_rounds": len(rounds),
        "throughput_images": n,
    }


def default_run(args_dict: dict) -> dict:
    import keras
    import numpy as np
    import pandas as pd

    from brain_pipeline.core.data import shortcuts
    from brain_pipeline.core.data.sources import TARGET_CLASSES
    from brain_pipeline.core.model import evaluation
    from brain_pipeline.core.model.training import predict_probabilities, train_classifier

    config, table, parts = _load(args_dict)
    (_, train_x, train_y), (_, val_x, val_y) = parts["train"], parts["val"]
    test, test_x, test_y = parts["test"]
    clock = _EpochClock(val_x, val_y, len(TARGET_CLASSES))

    class Clock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            f1 = clock.record(self.model)
            print(
                f"  default epoch {epoch + 1}: val macro-F1 {f1:.3f} "
                f"at {clock.points[-1]['seconds']:.0f} s",
                flush=True,
            )

    with tempfile.TemporaryDirectory() as scratch:
        result = train_classifier(
            train_x,
            train_y,
            val_x,
            val_y,
            config,
            class_names=TARGET_CLASSES,
            resume_dir=Path(scratch) / "resume",
            log=lambda _: None,
            extra_callbacks=[Clock()],
        )
    probabilities = predict_probabilities(result.model, test_x)
    metrics = evaluation.classification_metrics(test_y, probabilities, TARGET_CLASSES)
    report = metrics["classification_report"]
    within = evaluation.within_source_healthy_vs_alzheimer(
        test["source_label"], test["target_class"], probabilities, TARGET_CLASSES
    )

    # The trivial probe on the model's inputs: group-CV over all splits, and train -> test.
    features = {split: shortcuts.tensor_statistics(x) for split, (_, x, _) in parts.items()}
    labels = {split: frame["target_class"].to_numpy() for split, (frame, _, _) in parts.items()}
    all_features = pd.concat(features.values(), ignore_index=True)
    all_labels = np.concatenate(list(labels.values()))
    all_groups = np.concatenate([frame["group_id"].to_numpy() for frame, _, _ in parts.values()])
    cv_probe = shortcuts.probe_accuracy(all_features, all_labels, all_groups)
    held_out = shortcuts.held_out_probe_accuracy(
        features["train"], labels["train"], features["test"], labels["test"]
    )
    return {
        "config": config.as_dict(),
        "parameters": int(result.model.count_params()),
        "train_seconds": result.train_seconds,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "epoch_clock": clock.points,
        "test_accuracy": metrics["accuracy"],
        "test_macro_f1": metrics["f1_macro"],
        "test_weighted_f1": metrics["f1_weighted"],
        "test_roc_auc_macro": metrics["roc_auc_macro"],
        "test_ece": metrics["expected_calibration_error"],
        "confusion_matrix": metrics["confusion_matrix"],
        "per_class": {
            name: {k: report[name][k] for k in ("precision", "recall", "f1-score", "support")}
            for name in TARGET_CLASSES
        },
        "per_source": evaluation.metrics_by_group(
            test_y, probabilities, list(test["dataset"]), TARGET_CLASSES
        ),
        "within_source_healthy_vs_alzheimer_acc": within["accuracy"],
        "within_source_n_images": within["n_images"],
        "tensor_probe_accuracy": held_out,
        "tensor_probe_cv_accuracy": cv_probe.accuracy,
        "tensor_probe_per_feature": cv_probe.per_feature_accuracy,
        "peak_rss_gb": _peak_rss_gb(),
    }


def seed_run(args_dict: dict) -> dict:
    import keras
    import tensorflow as tf

    from brain_pipeline.core.data.sources import TARGET_CLASSES
    from brain_pipeline.core.imaging.preprocessing import Preprocessing
    from brain_pipeline.core.model.architectures import build_model
    from brain_pipeline.core.model.inputs import batch_stream
    from brain_pipeline.core.model.training import TrainingConfig, balanced_class_weights

    from benchdata import split_tensors

    config = TrainingConfig()
    size, cap_s = args_dict["seed_image_size"], 60.0 * args_dict["seed_cap_min"]
    # The seed network's inputs: same crop, stripping and normalisation, at the study's size.
    preprocessing = Preprocessing(size, skull_strip=config.skull_strip, intensity=config.intensity)
    raw, table = _splits(args_dict)
    cache = Path(args_dict["work_dir"])
    started = time.perf_counter()
    _, train_x, train_y = split_tensors(raw, table, "train", preprocessing, cache)
    _, val_x, val_y = split_tensors(raw, table, "val", preprocessing, cache)
    print(f"  seed tensors at {size} px ready in {time.perf_counter() - started:.0f} s", flush=True)
    n_classes = len(TARGET_CLASSES)
    keras.utils.set_random_seed(config.seed)
    model = build_model(
        "seed_cnn",
        image_size=size,
        channels=3,
        n_classes=n_classes,
        augmentation=config.augmentation,
        seed=config.seed,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate), loss="categorical_crossentropy"
    )
    # The pipeline's stream, grayscale repeated into the study's three channels, endless
    # (the time cap ends training); each pass reshuffles.
    stream = (
        batch_stream(
            train_x, train_y, n_classes, batch_size=config.batch_size, shuffle=True, seed=0
        )
        .map(lambda x, y: (tf.repeat(x, 3, axis=-1), y))
        .repeat()
    )
    clock = _EpochClock(val_x, val_y, n_classes, as_rgb=True)

    class Clock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            f1 = clock.record(self.model)
            seconds = clock.points[-1]["seconds"]
            print(f"  seed chunk {epoch + 1}: val macro-F1 {f1:.3f} at {seconds:.0f} s", flush=True)
            if seconds >= cap_s:
                self.model.stop_training = True

    chunk = args_dict["seed_chunk_steps"]
    model.fit(
        stream,
        steps_per_epoch=chunk,
        epochs=10_000,  # stopped by the time cap
        class_weight=balanced_class_weights(train_y, n_classes),
        callbacks=[Clock()],
        verbose=0,
    )
    best = max(clock.points, key=lambda point: point["val_macro_f1"])
    return {
        "seed_parameters": int(model.count_params()),
        "seed_image_size": size,
        "seed_cap_s": cap_s,
        "seed_seconds_trained": clock.points[-1]["seconds"],
        "seed_images_seen": len(clock.points) * chunk * config.batch_size,
        "seed_best_val_macro_f1": best["val_macro_f1"],
        "seed_seconds_to_best": best["seconds"],
        "seed_clock": clock.points,
        "seed_peak_rss_gb": _peak_rss_gb(),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bp_train_bench_") as scratch:
        work = args.work_dir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        shared = {**vars(args), "work_dir": str(work)}
        print("prepare: splits and tensor caches", flush=True)
        summary = _in_child(prepare, shared)
        print(json.dumps(summary), flush=True)
        print("throughput: streaming vs in-memory", flush=True)
        summary.update(_in_child(throughput, shared))
        print(f"streaming_vs_inmemory {summary['streaming_vs_inmemory']:.3f}", flush=True)
        print("default: full training and test", flush=True)
        default = _in_child(default_run, shared)
        print(json.dumps({k: v for k, v in default.items() if k != "epoch_clock"}), flush=True)
        summary.update(default)
        if not args.skip_seed:
            print(
                f"seed: seed_cnn at {args.seed_image_size} px, capped at {args.seed_cap_min} min",
                flush=True,
            )
            seed = _in_child(seed_run, shared)
            summary.update(seed)
            reached = [
                point["seconds"]
                for point in default["epoch_clock"]
                if point["val_macro_f1"] >= seed["seed_best_val_macro_f1"]
            ]
            summary["default_seconds_to_seed_best"] = reached[0] if reached else None
            summary["speedup_vs_seed"] = (
                seed["seed_seconds_to_best"] / reached[0] if reached else None
            )
    # The per-epoch clocks go on their own line, so the last line stays readable.
    clocks = {key: summary.pop(key) for key in ("epoch_clock", "seed_clock") if key in summary}
    print("clocks:", json.dumps(clocks))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
