"""Cross-validation by near-duplicate group of one training configuration, and
leave-one-source-out, on a real data folder.

    .venv/bin/python benchmarks/cv.py --data-dir /path/to/datasets --work-dir DIR \\
        [--configuration NAME] [--set KEY=VALUE]... [--folds 5] [--budget-minutes 150] \\
        [--prepared-dir DIR] [--run-folds N] [--sources NAME,...]

1. prepare - the manifest and the balanced index of the training datasets with the
   pipeline's defaults. Every near-duplicate group goes to one of k folds (scikit-learn's
   StratifiedGroupKFold: a subject never sits in two folds, each fold holds about the same
   share of each class); one tensor cache for the whole index.
2. leave one source out - for each training source, the other sources are indexed as the
   pipeline would index them and a model is trained on them (15% of their groups for
   validation); the left-out source is then scored as an external dataset: its copies of
   training-pool images (exact, thumbnail twin, re-saved) are left out and counted, and the
   questions its labels answer are scored with intervals over its own groups. A source is
   skipped, with the reason, when one of its classes exists in no other source or fewer than
   `--min-source-images` images are left once its copies are out. Each left-out source
   reports the recall of each of its classes (a source of one class, such as LGG's tumours,
   only that); its model is kept as `without_<source>.keras`.
3. folds - for each fold: train on the other folds (15% of their groups for validation, where
   the epoch clock measures macro-F1 after every epoch), test on the fold: accuracy,
   macro-F1, per-class F1, within-source healthy vs Alzheimer, ECE, 95% intervals over groups;
   the raw-file probe (gradient boosting on size, channels, format, brightness) trained on
   the same training images, and the model's margin over it on the same test images, with an
   interval over groups; the tensor probe; kWh of the training (codecarbon, as the pipeline
   measures it).

`--all-unique` keeps the same test folds but also trains on the unique images that class
balancing leaves out (the index setting `balance_classes = false`; the class weights balance
the loss instead), minus any whose group has a member in the fold's test or validation rows.

`--sources a,b` leaves out only the sources named (default: every training source).
`--run-folds N` trains only the first N of the k folds (a screen of candidates on the same
folds: the summary is then over those folds). `--prepared-dir` keeps step 1 (manifest,
folds, tensor cache) in a folder of its own, so candidates that share the data, folds, seed
and preprocessing share one preparation.

Each fold and each source runs in a fresh process and writes its result (and each fold its
model and test predictions) to the work folder when it ends; a later run with the same work
folder and settings reuses what is there, so a run stopped by `--budget-minutes` (counted
from the start, preparation included; no fold is started that would not fit, judged by the
longest fold so far) can be continued.

Prints progress, then one JSON object as the last line: the mean and spread (sample standard
deviation over folds) of each metric, pooled out-of-fold figures with 95% intervals over
groups, per source, and healthy vs Alzheimer within each source holding both (per slice, and
per subject where file names name subjects), and the leave-one-source-out table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from brain_pipeline.core import artifact_names
from brain_pipeline.core.data.prepared import pipeline_index
from brain_pipeline.core.model.cross_validation import held_out_scores, validation_rows
from brain_pipeline.core.model.measurement import in_child

TARGET_MACRO_F1 = 0.80


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--work-dir", type=Path, required=True, help="caches and results")
    parser.add_argument("--configuration", default=None, help="sweep.toml name; default: its")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training setting on top of the configuration (TOML value), e.g. image_size=128",
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--run-folds", type=int, default=None, help="train only the first N")
    parser.add_argument(
        "--prepared-dir", type=Path, default=None, help="step 1's outputs; default: --work-dir"
    )
    parser.add_argument("--seed", type=int, default=0, help="fold assignment")
    parser.add_argument("--budget-minutes", type=float, default=None)
    parser.add_argument("--min-source-images", type=int, default=50)
    parser.add_argument("--skip-sources", action="store_true", help="no leave-one-source-out")
    parser.add_argument(
        "--sources", default=None, help="comma-separated: leave out only these sources"
    )
    parser.add_argument(
        "--all-unique",
        action="store_true",
        help="also train on the unique images class balancing leaves out (same test folds)",
    )
    args = parser.parse_args(argv)
    try:
        args.set = _overrides(args.set)
    except ValueError as exc:
        parser.error(f"--set: {exc}")
    if args.folds < 2:
        parser.error(f"--folds must be at least 2, got {args.folds}")
    if args.run_folds is not None and not 1 <= args.run_folds <= args.folds:
        parser.error(f"--run-folds must be between 1 and --folds ({args.folds})")
    if not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a folder")
    return args


def _overrides(pairs: list[str]) -> dict:
    """KEY=VALUE strings as settings, each value read as TOML (128, 0.1, true, "x")."""
    import tomllib

    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{pair!r} is not KEY=VALUE")
        try:
            settings[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{pair!r}: {value!r} is not a TOML value ({exc})") from exc
    return settings


def _config(args: dict):
    from brain_pipeline.core.model.sweep import load_sweep

    sweep = load_sweep()
    return sweep.resolve(args["configuration"] or sweep.default, args.get("set") or None)


def _settings(args: dict) -> dict:
    """What the cached results depend on; a work folder holds the results of one of these."""
    return _prepared_settings(args) | {"config": _config(args).as_dict()}


def _prepared_settings(args: dict) -> dict:
    """What step 1's outputs depend on; a prepared folder holds those of one of these."""
    settings = {
        "data_dir": str(Path(args["data_dir"]).resolve()),
        "folds": args["folds"],
        "seed": args["seed"],
        "preprocessing": dataclasses.asdict(_config(args).preprocessing),
    }
    return settings | ({"all_unique": True} if args.get("all_unique") else {})


def _prepared(args: dict) -> Path:
    return Path(args.get("prepared_dir") or args["work_dir"])


def prepare(args: dict) -> dict:
    """Manifest, balanced index with a fold per group, and one tensor cache of the index."""
    from sklearn.model_selection import StratifiedGroupKFold

    from brain_pipeline.core.data.manifest import build_manifest
    from brain_pipeline.core.data.sources import load_raw_data_config
    from brain_pipeline.core.model.tensors import tensors_for_rows

    started, work = time.perf_counter(), _prepared(args)
    raw = load_raw_data_config(Path(args["data_dir"]))
    manifest, _ = build_manifest(raw.datasets)
    manifest.to_parquet(work / artifact_names.MANIFEST)
    index = pipeline_index(manifest, raw.names("training"))
    folds = StratifiedGroupKFold(n_splits=args["folds"], shuffle=True, random_state=args["seed"])
    index["fold"] = -1
    for fold, (_, test) in enumerate(
        folds.split(index, index["target_class"], groups=index["group_id"])
    ):
        index.loc[index.index[test], "fold"] = fold
    thumbnails = manifest.drop_duplicates("sha256").set_index("sha256")["thumbnail"]
    index["thumbnail"] = index["sha256"].map(thumbnails)
    preprocessing = _config(args).preprocessing
    if args.get("all_unique"):
        everything = pipeline_index(manifest, raw.names("training"), balance=False)
        groups = everything.set_index("sha256")["group_id"]
        index["unbalanced_group"] = index["sha256"].map(groups)
        extra = everything[~everything["sha256"].isin(index["sha256"])].reset_index(drop=True)
        extra = extra.assign(unbalanced_group=extra["group_id"], fold=-1)
        extra["thumbnail"] = extra["sha256"].map(thumbnails)
        extra.to_parquet(work / "extra.parquet")
        tensors_for_rows(extra, raw.roots, preprocessing, work / "tensors", _progress)
    index.to_parquet(work / "folds.parquet")
    tensors_for_rows(index, raw.roots, preprocessing, work / "tensors", _progress)
    counts = index.groupby(["fold", "target_class"]).size().unstack(fill_value=0)
    return {
        "n_images": len(index),
        "n_groups": int(index["group_id"].nunique()),
        "fold_class_counts": {int(k): v for k, v in counts.to_dict(orient="index").items()},
        "prepare_seconds": time.perf_counter() - started,
    }


def _progress(done: int, total: int) -> None:
    if done == total or done % 2000 == 0:
        print(f"  tensors {done}/{total}", flush=True)


def _train(config, train, val, label: str, work: Path, sources: list[str]) -> dict:
    """Train one model on (tensors, labels) pairs; its clock, energy and the model."""
    import tempfile

    from brain_pipeline.core.classes import TARGET_CLASSES
    from brain_pipeline.core.emissions import TrackerSettings, track_step
    from brain_pipeline.core.model.measurement import EpochClock
    from brain_pipeline.core.model.training import train_classifier

    clock = EpochClock(val[0], val[1], len(TARGET_CLASSES), label=label)
    with (
        tempfile.TemporaryDirectory(dir=work) as scratch,
        track_step(TrackerSettings(), asset_key=label, run_id="cv") as measurement,
    ):
        result = train_classifier(
            *train,
            *val,
            config,
            class_names=TARGET_CLASSES,
            resume_dir=Path(scratch) / "resume",
            log=lambda _: None,
            extra_callbacks=[clock.callback()],
            train_sources=sources,
        )
    reached = clock.first_reached(TARGET_MACRO_F1)
    return {
        "model": result.model,
        "train_seconds": result.train_seconds,
        "epochs_run": result.epochs_run,
        "kwh": _number(measurement.record.get("energy_kwh")),
        "minutes_to_val_macro_f1_080": None if reached is None else reached / 60,
        "epoch_clock": clock.points,
    }


def _number(value) -> float | None:
    """A measured figure, or None where codecarbon measured nothing (None or NaN)."""
    return None if value is None or value != value else float(value)


def run_fold(args: dict, fold: int) -> dict:
    """Train on every fold but `fold`, test on it; writes its predictions beside the result."""
    import numpy as np
    import pandas as pd

    from brain_pipeline.core.classes import TARGET_CLASSES
    from brain_pipeline.core.data.sources import load_raw_data_config
    from brain_pipeline.core.model.tensors import tensors_for_rows
    from brain_pipeline.core.model.training import predict_probabilities

    work, prepared, config = Path(args["work_dir"]), _prepared(args), _config(args)
    index = pd.read_parquet(prepared / "folds.parquet")
    raw = load_raw_data_config(Path(args["data_dir"]))
    tensors, labels = tensors_for_rows(index, raw.roots, config.preprocessing, prepared / "tensors")
    test = (index["fold"] == fold).to_numpy()
    val = ~test & validation_rows(index)
    train = ~test & ~val
    part = {
        name: (np.asarray(tensors[mask]), labels[mask])
        for name, mask in (("train", train), ("val", val), ("test", test))
    }
    train_rows = index[train]
    if args.get("all_unique"):
        extra, extra_x, extra_y = _extra_training(prepared, index[test | val], raw, config)
        train_x, train_y = part["train"]
        part["train"] = (np.concatenate([train_x, extra_x]), np.concatenate([train_y, extra_y]))
        train_rows = pd.concat([train_rows, extra], ignore_index=True)
    sources = train_rows["dataset"].tolist()
    trained = _train(config, part["train"], part["val"], f"fold {fold}", work, sources)
    model = trained.pop("model")
    model.save(work / f"fold_{fold}.keras")  # for later looks at the same folds
    probabilities = predict_probabilities(model, part["test"][0])
    rows = index[test].reset_index(drop=True)
    identity = ["sha256", "group_id", "dataset", "source_label", "target_class", "subjects"]
    predictions = rows[[c for c in identity if c in rows]].copy()
    for position, name in enumerate(TARGET_CLASSES):
        predictions[f"p_{name}"] = probabilities[:, position]
    predictions["probe_class"] = _raw_probe(train_rows, rows)
    predictions.to_parquet(work / f"fold_{fold}_predictions.parquet")
    return {
        "fold": fold,
        "n_train": len(train_rows),
        "n_val": int(val.sum()),
        "n_test": int(test.sum()),
        **trained,
        **held_out_scores(predictions),
        "tensor_probe_accuracy": _tensor_probe(part, train_rows, rows),
    }


def _raw_probe(train_rows, test_rows):
    """The raw-file probe's class for each test row, trained on the training rows."""
    from brain_pipeline.core.data import shortcuts

    return shortcuts.held_out_probe_predictions(
        shortcuts.raw_file_statistics(train_rows),
        train_rows["target_class"],
        shortcuts.raw_file_statistics(test_rows),
    )


def _tensor_probe(part: dict, train_rows, test_rows) -> float:
    from brain_pipeline.core.data import shortcuts

    return shortcuts.held_out_probe_accuracy(
        shortcuts.tensor_statistics(part["train"][0]),
        train_rows["target_class"],
        shortcuts.tensor_statistics(part["test"][0]),
        test_rows["target_class"],
    )


def _extra_training(work: Path, held_out, raw, config):
    """The unique images balancing left out whose group (in the grouping of all unique
    images) has no member in this fold's test or validation rows: rows, tensors, labels."""
    import numpy as np
    import pandas as pd

    from brain_pipeline.core.data import dedup
    from brain_pipeline.core.model.tensors import tensors_for_rows

    extra = pd.read_parquet(work / "extra.parquet")
    extra = extra[~extra["unbalanced_group"].isin(set(held_out["unbalanced_group"]))]
    extra = extra.reset_index(drop=True)
    twins = dedup.thumbnail_twins(extra, held_out, dedup.DEFAULT_NEAR_DUPLICATE_COSINE)
    if twins.any():  # the grouping puts every thumbnail twin in one group; check it did
        raise RuntimeError(f"{int(twins.sum())} held-out images have a twin among the extra")
    tensors, labels = tensors_for_rows(extra, raw.roots, config.preprocessing, work / "tensors")
    return extra, np.asarray(tensors), labels


def run_source(args: dict, source: str) -> dict:
    """Train without `source`, score it as an external dataset (or say why not)."""
    import pandas as pd

    from brain_pipeline.core.data import external
    from brain_pipeline.core.data.sources import load_raw_data_config

    raw = load_raw_data_config(Path(args["data_dir"]))
    manifest = pd.read_parquet(_prepared(args) / artifact_names.MANIFEST)
    others = [d for d in raw.names("training") if d != source]
    pool = external.scorable_rows(manifest, others)
    held = external.scorable_rows(manifest, [source])
    missing = sorted(set(held["target_class"]) - set(pool["target_class"]))
    result: dict = {"source": source, "n_files": len(held), "trained_on": others}
    if missing:
        return result | {"skipped": f"its class {', '.join(missing)} is in no other source"}
    copies = external.copies_of_training_pool(held, pool)
    kept = held[~copies["excluded"].to_numpy()].reset_index(drop=True)
    result["excluded_copies"] = {k: int(copies[k].sum()) for k in external.COPY_KINDS}
    result["n_scored"] = len(kept)
    if len(kept) < args["min_source_images"]:
        return result | {
            "skipped": f"{len(kept)} image(s) left once copies of the other sources' images are out"
        }
    return result | _train_and_score(args, pipeline_index(manifest, others), raw.roots, kept)


def _sources_to_leave_out(args: dict) -> list[str]:
    """The training sources, or those `--sources` names (each checked against them)."""
    from brain_pipeline.core.data.sources import load_raw_data_config

    names = load_raw_data_config(Path(args["data_dir"])).names("training")
    if not args.get("sources"):
        return names
    chosen = [name.strip() for name in args["sources"].split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise SystemExit(f"--sources: {', '.join(unknown)} not among {', '.join(names)}")
    return chosen


def _train_and_score(args: dict, index, roots, kept) -> dict:
    """Train on the other sources' index as the pipeline would; score `kept` (external rows)."""
    import numpy as np

    from brain_pipeline.core.classes import TARGET_CLASSES
    from brain_pipeline.core.data import external
    from brain_pipeline.core.model.external import external_scores
    from brain_pipeline.core.model.tensors import tensors_for_rows
    from brain_pipeline.core.model.training import predict_probabilities

    work, config = Path(args["work_dir"]), _config(args)
    val = validation_rows(index)

    def tensors(frame):
        return tensors_for_rows(frame, roots, config.preprocessing, _prepared(args) / "tensors")

    left_out, sources = kept["dataset"].iloc[0], index[~val]["dataset"].tolist()
    label = f"without {left_out}"
    trained = _train(config, tensors(index[~val]), tensors(index[val]), label, work, sources)
    model = trained.pop("model")
    model.save(work / f"without_{left_out}.keras")  # for later looks (e.g. its explanations)
    probabilities = predict_probabilities(model, tensors(kept)[0])
    # A source of one class (LGG: tumours only) answers with its recall alone.
    scores = (
        external_scores(
            kept.assign(group=external.groups_within(kept)), probabilities, TARGET_CLASSES
        )
        if kept["target_class"].nunique() > 1
        else {"n_classes": 1}
    )
    trained.pop("epoch_clock")
    counts = index[~val]["target_class"].value_counts().to_dict()
    predicted = np.asarray(TARGET_CLASSES)[probabilities.argmax(axis=1)]
    truth = kept["target_class"].to_numpy()
    recall = {c: float((predicted == truth)[truth == c].mean()) for c in set(truth)}
    return {
        "n_train": int((~val).sum()),
        "train_class_counts": counts,
        "recall_per_class": recall,
        **trained,
        **scores,
    }


def _cached(path: Path, compute) -> dict:
    """The JSON result at `path`, computing and writing it first when absent."""
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    path.write_text(json.dumps(result, indent=1, default=_plain))
    return result


def _plain(value):
    """numpy scalars as Python numbers, for JSON."""
    return value.item()


def _check_work_dir(args: dict) -> None:
    files = {
        Path(args["work_dir"]) / "settings.json": _settings(args),
        _prepared(args) / "prepared.settings.json": _prepared_settings(args),
    }
    for path, settings in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and json.loads(path.read_text()) != settings:
            raise SystemExit(
                f"{path} was written for other settings (data, configuration, folds, seed or "
                "preprocessing); use another --work-dir or --prepared-dir"
            )
        path.write_text(json.dumps(settings, indent=1))


def _run_folds(args: dict, started: float) -> list[dict]:
    """Every fold whose result exists or fits the budget, in order."""
    work, results, longest = Path(args["work_dir"]), [], 0.0
    for fold in range(args["run_folds"] or args["folds"]):
        path = work / f"fold_{fold}.json"
        elapsed = (time.perf_counter() - started) / 60
        budget = args["budget_minutes"]
        if not path.exists() and budget is not None and elapsed + longest > budget:
            print(f"fold {fold}: not started ({elapsed:.0f} of {budget:.0f} min used)", flush=True)
            continue
        print(f"fold {fold + 1} of {args['folds']}", flush=True)
        fold_started = time.perf_counter()
        result = _cached(path, lambda fold=fold: in_child(run_fold, args, fold))
        longest = max(longest, (time.perf_counter() - fold_started) / 60)
        print(f"  fold {fold}: {_line(result)}", flush=True)
        results.append(result)
    return results


def _line(result: dict) -> str:
    return (
        f"macro-F1 {result['macro_f1']:.3f}, accuracy {result['accuracy']:.3f}, within source "
        f"{result['within_source']:.3f}, ECE {result['ece']:.3f}, raw probe "
        f"{result['raw_probe_accuracy']:.3f}, {result['train_seconds'] / 60:.1f} min"
    )


METRICS = (
    "macro_f1",
    "accuracy",
    "f1_healthy_brain",
    "f1_tumor_brain",
    "f1_alzheimer_brain",
    "within_source",
    "ece",
    "roc_auc_macro",
    "raw_probe_accuracy",
    "tensor_probe_accuracy",
    "train_seconds",
    "kwh",
)


def summarise(args: dict, folds: list[dict], sources: dict[str, dict]) -> dict:
    """Mean and spread over folds, pooled out-of-fold figures, leave-one-source-out."""
    import numpy as np
    import pandas as pd

    summary: dict = {"configuration": _settings(args)["config"], "cv_k": args["folds"]}
    summary["cv_folds_completed"] = len(folds)
    for name in METRICS:
        values = [f[name] for f in folds if f.get(name) is not None]
        summary[f"cv_{name}_mean"] = float(np.mean(values)) if values else None
        summary[f"cv_{name}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
    minutes = [f["minutes_to_val_macro_f1_080"] for f in folds]
    summary["minutes_to_macro_f1_080_per_fold"] = minutes
    reached = folds and all(m is not None for m in minutes)
    summary["minutes_to_macro_f1_080"] = float(np.mean(minutes)) if reached else None
    summary["margin_over_raw_probe_per_fold"] = [f["margin_over_raw_probe"] for f in folds]
    if folds:
        work = Path(args["work_dir"])
        pooled = pd.concat(
            pd.read_parquet(work / f"fold_{f['fold']}_predictions.parquet") for f in folds
        )
        scores = held_out_scores(pooled.reset_index(drop=True))
        summary["pooled_out_of_fold"] = {
            "n_images": len(pooled),
            "n_groups": scores["n_test_groups"],
            "intervals": scores["intervals"],
            "margin_over_raw_probe": scores["margin_over_raw_probe"],
            "raw_probe_accuracy": scores["raw_probe_accuracy"],
            "ece": scores["ece"],
            "per_source": scores["per_source"],
            # Per slice, and per subject where the names give subjects (ADNI's scans).
            "healthy_vs_alzheimer_by_source": scores["healthy_vs_alzheimer_by_source"],
        }
    summary["leave_one_source_out"] = sources
    return summary


def main(argv: list[str] | None = None) -> None:
    args = vars(parse_args(argv))
    args["data_dir"], args["work_dir"] = str(args["data_dir"]), str(args["work_dir"])
    args["prepared_dir"] = str(args["prepared_dir"] or args["work_dir"])
    started = time.perf_counter()
    _check_work_dir(args)
    work = Path(args["work_dir"])
    print("prepare: manifest, index, folds, tensors", flush=True)
    prepared = _cached(_prepared(args) / "prepared.json", lambda: in_child(prepare, args))
    print(json.dumps(prepared), flush=True)
    sources: dict[str, dict] = {}
    for source in [] if args["skip_sources"] else _sources_to_leave_out(args):
        print(f"leave out {source}", flush=True)
        path = work / f"source_{source}.json"
        sources[source] = _cached(path, lambda source=source: in_child(run_source, args, source))
        print(f"  {json.dumps({k: v for k, v in sources[source].items()})}", flush=True)
    summary = summarise(args, _run_folds(args, started), sources)
    summary["prepare"] = prepared
    summary["wall_minutes"] = (time.perf_counter() - started) / 60
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
