"""Train and score the default model on a raw-data folder, with the pipeline's core functions.

manifest -> balanced index -> splits -> train (TrainingParams defaults) -> test metrics
-> Grad-CAM scores on every test image. Prints the figures, then one JSON line.

    .venv/bin/python benchmarks/synthetic_baseline.py [--data-dir data] [--epochs 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from brain_pipeline.core import evaluation, gradcam, splits
from brain_pipeline.core.artifacts import write_figure
from brain_pipeline.core.sources import TARGET_CLASSES
from brain_pipeline.core.synthetic import lesion_masks_for
from brain_pipeline.core.training import predict_probabilities, train_classifier
from brain_pipeline.defs.assets import TrainingParams

from benchdata import prepared_splits, run_in_folder, split_tensors

REPO = Path(__file__).resolve().parents[1]
OVERRIDABLE = (
    "epochs",
    "image_size",
    "batch_size",
    "learning_rate",
    "early_stopping_patience",
    "reduce_lr_patience",
    "warmup_epochs",
    "seed",
    "architecture",
    "intensity",
    "precise_bn_batches",
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / "data")
    parser.add_argument("--artifacts-dir", type=Path, default=None, help="default: a temp dir")
    defaults = TrainingParams()
    for name in OVERRIDABLE:
        value = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--no-skull-strip", action="store_true")
    parser.add_argument(
        "--gallery", type=Path, default=None, help="save the tumour maps of 16 test tumours here"
    )
    return parser.parse_args()


def run(args: argparse.Namespace, artifacts: Path) -> dict:
    raw, table = prepared_splits(args.data_dir)
    print(splits.split_class_counts(table).to_string(), "\n")

    overrides = {name: getattr(args, name) for name in OVERRIDABLE}
    params = TrainingParams(
        **overrides, augment=not args.no_augment, skull_strip=not args.no_skull_strip
    )
    config = params.to_core()
    print("config:", json.dumps(dataclasses.asdict(config)))
    _, train_x, train_y = split_tensors(raw, table, "train", config.preprocessing, artifacts)
    _, val_x, val_y = split_tensors(raw, table, "val", config.preprocessing, artifacts)
    test, test_x, test_y = split_tensors(raw, table, "test", config.preprocessing, artifacts)
    result = train_classifier(
        train_x,
        train_y,
        val_x,
        val_y,
        config,
        class_names=TARGET_CLASSES,
        resume_dir=artifacts / "resume",
        log=print,
    )
    probabilities = predict_probabilities(result.model, test_x)
    metrics = evaluation.classification_metrics(test_y, probabilities, TARGET_CLASSES)
    per_dataset = evaluation.metrics_by_group(
        test_y, probabilities, list(test["dataset"]), TARGET_CLASSES
    )
    print(
        f"\nbest epoch {result.best_epoch} of {result.epochs_run}, "
        f"{result.train_seconds:.1f} s; classes {TARGET_CLASSES}"
    )
    print("confusion (rows true, cols predicted):", metrics["confusion_matrix"])
    print("per dataset:", json.dumps(per_dataset))

    # The cached test tensors and the masks in their geometry, as gradcam_gallery uses them.
    images = np.asarray(test_x, dtype=np.float32)
    masks = lesion_masks_for(raw, test["dataset"], test["path"], config.image_size)
    predicted = probabilities.argmax(axis=1)
    heatmaps = gradcam.gradcam(result.model, images, predicted)
    scores = gradcam.score_explanations(
        result.model,
        images,
        heatmaps,
        predicted,
        lesion_masks=masks,
        lesion_class=TARGET_CLASSES.index("tumor_brain"),
        skull_stripped=config.skull_strip,
    ).as_dict()
    print("grad-cam on all test images:", json.dumps(scores))
    if args.gallery is not None:
        _save_tumour_gallery(result.model, images, masks, probabilities, args.gallery)
    return {
        "test_accuracy": round(metrics["accuracy"], 4),
        "test_macro_f1": round(metrics["f1_macro"], 4),
        "confusion_matrix": metrics["confusion_matrix"],
        "train_seconds": round(result.train_seconds, 1),
        "epochs_run": result.epochs_run,
        **{
            k: round(scores[k], 4) if scores[k] is not None else None
            for k in (
                "heat_in_brain",
                "pointing_game",
                "heat_in_lesion",
                "deletion_auc",
                "deletion_auc_random",
                "deletion_auc_zero",
                "deletion_auc_zero_random",
            )
        },
        "n_train": int(len(train_y)),
        "n_test": int(len(test_y)),
    }


def _save_tumour_gallery(model, images, masks, probabilities, out: Path) -> None:
    """The tumour-class maps of up to 16 test tumours, lesion outlines drawn in cyan."""
    tumour = TARGET_CLASSES.index("tumor_brain")
    chosen = [i for i, mask in enumerate(masks) if mask is not None][:16]
    maps = gradcam.gradcam(model, images[chosen], np.full(len(chosen), tumour))
    titles = []
    for i, heat in zip(chosen, maps, strict=True):
        hit = gradcam.pointing_game_hit(heat, masks[i])
        titles.append(f"p(tumour) {probabilities[i, tumour]:.2f}, {'hit' if hit else 'miss'}")
    figure = gradcam.render_gallery(
        images[chosen, ..., 0], maps, titles, suptitle="tumour maps of test tumours"
    )
    for ax, i in zip(figure.axes, chosen, strict=False):
        ax.contour(masks[i], levels=[0.5], colors="cyan", linewidths=0.6)
    write_figure(out, figure)
    print(f"gallery: {out}")


def main() -> None:
    args = parse_args()
    summary = run_in_folder(args.artifacts_dir, lambda folder: run(args, folder), "bp_bench_")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
