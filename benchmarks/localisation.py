"""Localisation of explanation maps: how well a model's maps find the lesions.

Trains the default model on a raw-data folder with the pipeline's core functions (manifest ->
balanced index -> splits -> train with the `TrainingConfig` defaults), or loads a saved one
with `--model`, then scores it on every test image: accuracy and macro-F1, Grad-CAM scores
(heat in brain, deletion with both fills), and the pointing game on the test tumours in
detail: the hit rate at several tolerances, how far each miss's peak lies from its lesion,
and against the whole tumour (core and oedema halo), each beside its chance rate.

Then every method of `--methods` (default: all of `brain-pipeline explain --method`) is
scored on the same model and the same test slices with a lesion mask, per dataset with
intervals over patients: `pointing_game` and `pointing_game_chance`, `energy_in_lesion` and
`lesion_area_fraction`, `top5_in_lesion`, `dice` (the map thresholded at the percentile best
on the training split's lesioned slices), `centre_baseline_pointing_game` (a map that only
knows where the brain is), and the deletion AUC beside random maps'.

`--external NAME,...` (with `--model`) scores instead every slice with a lesion mask of those
datasets, which the model never trained on (e.g. `cv.py`'s `without_<source>.keras`): no
splits are made; each image's Dice threshold is chosen on the other half of the patients.

Prints the figures, then one JSON line.

    .venv/bin/python benchmarks/localisation.py [--data-dir data] [--epochs 20]
    .venv/bin/python benchmarks/localisation.py --data-dir ../shared/datasets \
        [--save-model model.keras] [--methods gradcam,occlusion]
    .venv/bin/python benchmarks/localisation.py --data-dir ../shared/datasets \
        --model without_lgg.keras --external lgg_mri_segmentation_buda
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from brain_pipeline.core.artifacts import write_figure
from brain_pipeline.core.classes import TARGET_CLASSES, TUMOR
from brain_pipeline.core.data import external, splits, subjects
from brain_pipeline.core.data.lesions import lesion_masks_by_region
from brain_pipeline.core.data.manifest import build_manifest
from brain_pipeline.core.data.prepared import prepared_splits
from brain_pipeline.core.data.sources import load_raw_data_config
from brain_pipeline.core.explain.comparison import LesionedImages, compare_methods
from brain_pipeline.core.explain.heatmaps import gradcam
from brain_pipeline.core.explain.localisation import (
    peak_distance_px,
    pointing_game_hit,
    pointing_tolerance_px,
)
from brain_pipeline.core.explain.method_names import METHODS
from brain_pipeline.core.explain.scores import Lesions, MapSettings, score_explanations
from brain_pipeline.core.imaging.preprocessing import Preprocessing
from brain_pipeline.core.model import evaluation
from brain_pipeline.core.model.architectures import AugmentationConfig
from brain_pipeline.core.model.measurement import run_in_folder
from brain_pipeline.core.model.tensors import split_tensors, tensors_for_rows
from brain_pipeline.core.model.training import (
    TrainingConfig,
    predict_probabilities,
    train_classifier,
)
from brain_pipeline.core.plots import render_gallery

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
# Pointing-game tolerances to report besides the standard one (9 px at 128 px).
TOLERANCES_PX = (0, 5, 9, 12, 15)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / "data")
    parser.add_argument("--artifacts-dir", type=Path, default=None, help="default: a temp dir")
    defaults = TrainingConfig()
    for name in OVERRIDABLE:
        value = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--no-skull-strip", action="store_true")
    parser.add_argument(
        "--gallery", type=Path, default=None, help="save the tumour maps of 16 test tumours here"
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="score this saved model (.keras) instead of training one, with the preprocessing "
        "recorded beside it (a bare model file: the preprocessing options given here)",
    )
    parser.add_argument("--save-model", type=Path, default=None, help="keep the trained model")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}"
    )
    parser.add_argument(
        "--external",
        default=None,
        metavar="NAME,...",
        help="with --model: score every lesioned slice of these datasets (never trained on)",
    )
    args = parser.parse_args()
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if unknown := sorted(set(args.methods) - set(METHODS)):
        parser.error(f"--methods: {', '.join(unknown)} not among {', '.join(METHODS)}")
    if args.external and args.model is None:
        parser.error("--external scores a saved model: give --model too")
    return args


SCORE_KEYS = (
    "heat_in_brain",
    "pointing_game",
    "pointing_game_chance",
    "heat_in_lesion",
    "pointing_game_whole_tumour",
    "pointing_game_whole_tumour_chance",
    "heat_in_whole_tumour",
    "deletion_auc",
    "deletion_auc_random",
    "deletion_auc_zero",
    "deletion_auc_zero_random",
)


def _config(args: argparse.Namespace):
    """The training configuration, and the model to score where `--model` names one."""
    overrides = {name: getattr(args, name) for name in OVERRIDABLE}
    augmentation = (
        AugmentationConfig(flip=False, rotation=0, zoom=0, contrast=0, brightness=0)
        if args.no_augment
        else AugmentationConfig()
    )
    config = TrainingConfig(
        **overrides, augmentation=augmentation, skull_strip=not args.no_skull_strip
    )
    if args.model is None:
        return config, None
    model = keras.models.load_model(args.model)
    if Preprocessing.record_path(args.model).exists():
        preprocessing = Preprocessing.for_model(args.model, model.input_shape[1])
        config = dataclasses.replace(config, **dataclasses.asdict(preprocessing))
    return config, model


def _trained(args, config, model, tensors, artifacts: Path):
    """`model` if given, else one trained on the train split; with what training took."""
    (train_x, train_y), (val_x, val_y) = tensors
    if model is not None:
        print(f"\nscoring {args.model}; classes {TARGET_CLASSES}")
        return model, {"model": str(args.model)}
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
    if args.save_model is not None:
        result.model.save(args.save_model)
        print(f"model saved to {args.save_model}")
    print(f"\nbest epoch {result.best_epoch} of {result.epochs_run}, ", end="")
    print(f"{result.train_seconds:.1f} s; classes {TARGET_CLASSES}")
    training = {"train_seconds": round(result.train_seconds, 1), "epochs_run": result.epochs_run}
    return result.model, training


def _localisation(args, model, images, probabilities, regions, skull_stripped) -> dict:
    """Grad-CAM scores on every test image, and the tumour-class maps' pointing detail."""
    masks, whole_tumour = regions["core"], regions["whole_tumour"]
    predicted = probabilities.argmax(axis=1)
    scores = score_explanations(
        model,
        images,
        gradcam(model, images, predicted),
        predicted,
        MapSettings(skull_stripped=skull_stripped),
        Lesions(masks, whole_tumour, images, target_class=TARGET_CLASSES.index(TUMOR)),
    ).as_dict()
    print("grad-cam on all test images:", json.dumps(scores))
    # The tumour-class maps of every test tumour, once, for the detail and the gallery.
    tumour = TARGET_CLASSES.index(TUMOR)
    tumours = [i for i, mask in enumerate(masks) if mask is not None]
    tumour_maps = (
        gradcam(model, images[tumours], np.full(len(tumours), tumour))
        if tumours
        else np.zeros((0, *images.shape[1:3]), np.float32)
    )
    pointing = _pointing_detail(
        tumour_maps,
        [masks[i] for i in tumours],
        [whole_tumour[i] for i in tumours],
        probabilities[tumours],
    )
    if args.gallery is not None:
        chosen = tumours[:16]
        _save_tumour_gallery(
            images[chosen],
            tumour_maps[:16],
            [masks[i] for i in chosen],
            [whole_tumour[i] for i in chosen],
            probabilities[chosen],
            args.gallery,
        )
    rounded = {k: round(scores[k], 4) if scores[k] is not None else None for k in SCORE_KEYS}
    return rounded | pointing


def run(args: argparse.Namespace, artifacts: Path) -> dict:
    raw, table = prepared_splits(args.data_dir)
    print(splits.split_class_counts(table).to_string(), "\n")
    config, model = _config(args)
    preprocessing = config.preprocessing
    print("config:", json.dumps(dataclasses.asdict(config)))
    _, train_x, train_y = split_tensors(raw, table, "train", preprocessing, artifacts)
    _, val_x, val_y = split_tensors(raw, table, "val", preprocessing, artifacts)
    test, test_x, test_y = split_tensors(raw, table, "test", preprocessing, artifacts)
    model, training = _trained(args, config, model, ((train_x, train_y), (val_x, val_y)), artifacts)
    probabilities = predict_probabilities(model, test_x)
    metrics = evaluation.classification_metrics(test_y, probabilities, TARGET_CLASSES)
    per_dataset = evaluation.metrics_by_group(
        test_y, probabilities, list(test["dataset"]), TARGET_CLASSES
    )
    print("confusion (rows true, cols predicted):", metrics["confusion_matrix"])
    print("per dataset:", json.dumps(per_dataset))
    # The cached test tensors and the masks in their geometry, as gradcam_gallery uses them.
    images = np.asarray(test_x, dtype=np.float32)
    regions = lesion_masks_by_region(raw, test, config.image_size)
    scored = LesionedImages(images, regions["whole_tumour"], subjects.patients_of(test))
    return {
        "test_accuracy": round(metrics["accuracy"], 4),
        "test_macro_f1": round(metrics["f1_macro"], 4),
        "confusion_matrix": metrics["confusion_matrix"],
        **training,
        **_localisation(args, model, images, probabilities, regions, config.skull_strip),
        "n_train": int(len(train_y)),
        "n_test": int(len(test_y)),
        "localisation_by_method": _by_method(
            args, model, scored, config, _lesioned_train(raw, table, config, artifacts)
        ),
    }


def _lesioned_train(raw, table, config, artifacts: Path) -> LesionedImages:
    """The training split's slices with a lesion mask (where Dice thresholds are chosen)."""
    train = splits.split_rows(table, "train")
    masked = train[train["lesion_mask"].notna()].reset_index(drop=True)
    tensors, _ = tensors_for_rows(masked, raw.roots, config.preprocessing, artifacts)
    regions = lesion_masks_by_region(raw, masked, config.image_size, ("whole_tumour",))
    return LesionedImages(
        np.asarray(tensors, np.float32), regions["whole_tumour"], subjects.patients_of(masked)
    )


def _by_method(args, model, scored: LesionedImages, config, train=None) -> dict:
    """Every method's localisation on `scored`, printed as a table, and as a dict."""
    print(f"\nmethods on {len(scored.with_lesions().images)} lesioned slices: {args.methods}")
    table = compare_methods(
        model, scored, args.methods, skull_stripped=config.skull_strip, train=train
    )
    for method, by_dataset in table.items():
        for dataset, figures in by_dataset.items():
            shown = {
                name: round(figures[name]["estimate"], 3)
                for name in ("pointing_game", "pointing_game_chance", "energy_in_lesion")
                + ("lesion_area_fraction", "top5_in_lesion", "dice")
                + ("centre_baseline_pointing_game",)
            }
            print(f"  {method:>20} {dataset}: {shown}")
    return table


def run_external(args: argparse.Namespace, artifacts: Path) -> dict:
    """`--external`: every lesioned slice of those datasets, scored with the saved model."""
    raw = load_raw_data_config(args.data_dir)
    names = [name.strip() for name in args.external.split(",") if name.strip()]
    known = [spec.name for spec in raw.datasets]
    if unknown := sorted(set(names) - set(known)):
        raise SystemExit(f"--external: {', '.join(unknown)} not among {', '.join(known)}")
    config, model = _config(args)
    manifest, _ = build_manifest([spec for spec in raw.datasets if spec.name in names])
    rows = external.scorable_rows(manifest, names)
    rows = rows[rows["lesion_mask"].notna()].reset_index(drop=True)
    tensors, labels = tensors_for_rows(rows, raw.roots, config.preprocessing, artifacts)
    images = np.asarray(tensors, np.float32)
    predicted = predict_probabilities(model, images).argmax(axis=1)
    regions = lesion_masks_by_region(raw, rows, config.image_size, ("whole_tumour",))
    patients = rows["subject"].where(rows["subject"].notna(), rows["sha256"])
    owners = pd.DataFrame({"dataset": rows["dataset"], "patient": patients.astype(str)})
    print(f"scoring {args.model} on {len(rows)} lesioned slices of {', '.join(names)}")
    return {
        "model": str(args.model),
        "external": names,
        "n_images": len(rows),
        "n_patients": int(owners["patient"].nunique()),
        "recall": round(float((predicted == labels).mean()), 4),
        "localisation_by_method": _by_method(
            args, model, LesionedImages(images, regions["whole_tumour"], owners), config
        ),
    }


def _pointing_detail(maps, masks, whole_tumour, probabilities) -> dict:
    """The pointing game of the tumour-class ``maps`` of test tumours (as score_explanations
    plays it) at several tolerances, the distance from each miss's peak to its lesion, and
    how many misses the whole tumour (core and oedema halo) would count as hits."""
    if not len(maps):
        return {}
    tumour = TARGET_CLASSES.index(TUMOR)
    pairs = list(zip(maps, masks, strict=True))
    standard = pointing_tolerance_px(maps.shape[1])
    hits = {
        t: np.array([pointing_game_hit(h, m, tolerance_px=t) for h, m in pairs])
        for t in sorted({*TOLERANCES_PX, standard})
    }
    missed = ~hits[standard]
    distances = np.sort(
        [peak_distance_px(h, m) for (h, m), miss in zip(pairs, missed, strict=True) if miss]
    )
    on_whole = sum(
        pointing_game_hit(h, w)
        for h, w, miss in zip(maps, whole_tumour, missed, strict=True)
        if miss
    )
    found = probabilities.argmax(axis=1) == tumour
    by_tolerance = {str(t): round(float(hit.mean()), 4) for t, hit in hits.items()}
    print(f"pointing game by tolerance (px): {by_tolerance}")
    print(
        f"tumours {len(maps)}, classified as tumour {int(found.sum())}; "
        f"missed at {standard} px: {int(missed.sum())} ({int((missed & found).sum())} of them "
        f"classified as tumour), their peaks {distances.round(1).tolist()} px from the lesion; "
        f"{on_whole} of them hit the whole tumour"
    )
    return {
        "pointing_game_by_tolerance_px": by_tolerance,
        "tumours_found": int(found.sum()),
        "peak_distance_px_of_misses": distances.round(1).tolist(),
        "misses_on_whole_tumour": int(on_whole),
    }


def _save_tumour_gallery(images, maps, masks, whole_tumour, probabilities, out: Path) -> None:
    """Tumour-class maps of test tumours: lesion cores outlined in cyan, the whole tumour
    (core and oedema halo) dashed."""
    tumour = TARGET_CLASSES.index(TUMOR)

    def verdict(heatmap, mask) -> str:
        return "hit" if pointing_game_hit(heatmap, mask) else "miss"

    titles = [
        f"p(tumour) {p[tumour]:.2f}, core {verdict(h, m)}, whole {verdict(h, w)}"
        for h, m, w, p in zip(maps, masks, whole_tumour, probabilities, strict=True)
    ]
    figure = render_gallery(images[..., 0], maps, titles, suptitle="tumour maps of test tumours")
    for ax, mask, whole in zip(figure.axes, masks, whole_tumour, strict=False):
        ax.contour(mask, levels=[0.5], colors="cyan", linewidths=0.6)
        ax.contour(whole, levels=[0.5], colors="cyan", linewidths=0.6, linestyles="dashed")
    write_figure(out, figure)
    print(f"gallery: {out}")


def main() -> None:
    args = parse_args()
    work = run_external if args.external else run
    summary = run_in_folder(args.artifacts_dir, lambda folder: work(args, folder), "bp_bench_")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
