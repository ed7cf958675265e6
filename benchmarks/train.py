"""Training benchmark: streaming input against in-memory, peak memory, time and test quality.

    .venv/bin/python benchmarks/train.py --data-dir /path/to/datasets [--throughput-images 1024]

One run, three phases, each phase in a fresh process (so its peak memory is its own):

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

Validation time counts in the run's clock. Prints progress, then one JSON object as the
last line.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from brain_pipeline.core import artifact_names
from brain_pipeline.core.locations import default_data_dir
from brain_pipeline.core.model.measurement import in_child


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--work-dir", type=Path, default=None, help="tensor caches; default temp")
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's")
    parser.add_argument("--throughput-images", type=int, default=2048)
    parser.add_argument("--throughput-rounds", type=int, default=9)
    return parser.parse_args(argv)


def _peak_rss_gb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _splits(args_dict: dict):
    """The raw-data config and the split table that the prepare phase wrote for this run."""
    import pandas as pd

    from brain_pipeline.core.data.sources import load_raw_data_config

    table = pd.read_parquet(Path(args_dict["work_dir"]) / artifact_names.SPLITS)
    return load_raw_data_config(args_dict["data_dir"]), table


def _load(args_dict: dict):
    from brain_pipeline.core.model.tensors import split_tensors
    from brain_pipeline.core.model.training import TrainingConfig

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
    from brain_pipeline.core.data.prepared import prepared_splits

    started = time.perf_counter()
    _, table = prepared_splits(args_dict["data_dir"])
    table.to_parquet(Path(args_dict["work_dir"]) / artifact_names.SPLITS)
    _, table, parts = _load(args_dict)
    counts = {split: int(len(frame)) for split, (frame, _, _) in parts.items()}
    by_class = table.groupby(["split", "target_class"]).size().unstack().to_dict(orient="index")
    return {
        "split_sizes": counts,
        "split_class_counts": by_class,
        "prepare_seconds": time.perf_counter() - started,
    }


def throughput(args_dict: dict) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from brain_pipeline.core.classes import TARGET_CLASSES
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
    import numpy as np
    import pandas as pd

    from brain_pipeline.core.classes import TARGET_CLASSES
    from brain_pipeline.core.data import shortcuts
    from brain_pipeline.core.model import evaluation
    from brain_pipeline.core.model.measurement import EpochClock
    from brain_pipeline.core.model.training import predict_probabilities, train_classifier

    config, table, parts = _load(args_dict)
    (_, train_x, train_y), (_, val_x, val_y) = parts["train"], parts["val"]
    test, test_x, test_y = parts["test"]
    clock = EpochClock(val_x, val_y, len(TARGET_CLASSES), label="default")

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
            extra_callbacks=[clock.callback()],
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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bp_train_bench_") as scratch:
        work = args.work_dir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        shared = {**vars(args), "work_dir": str(work)}
        print("prepare: splits and tensor caches", flush=True)
        summary = in_child(prepare, shared)
        print(json.dumps(summary), flush=True)
        print("throughput: streaming vs in-memory", flush=True)
        summary.update(in_child(throughput, shared))
        print(f"streaming_vs_inmemory {summary['streaming_vs_inmemory']:.3f}", flush=True)
        print("default: full training and test", flush=True)
        default = in_child(default_run, shared)
        print(json.dumps({k: v for k, v in default.items() if k != "epoch_clock"}), flush=True)
        summary.update(default)
    # The per-epoch clock goes on its own line, so the last line stays readable.
    print("epoch clock:", json.dumps(summary.pop("epoch_clock")))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
