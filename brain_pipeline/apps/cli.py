"""`brain-pipeline`: synthesise data, run the pipeline, predict, explain, trace lineage."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from brain_pipeline.core.explain.method_names import DEFAULT_METHOD, METHODS


def _synth(args: argparse.Namespace) -> int:
    from brain_pipeline.synthetic.phantoms import synthesize_datasets

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
    """Run the full_pipeline job on a persistent Dagster instance (history kept for the UI),
    once per training configuration asked for."""
    from brain_pipeline.apps.console import run_and_report
    from brain_pipeline.core.model.sweep import load_sweep

    run_config = json.loads(Path(args.config).read_text()) if args.config else {}
    sweep = load_sweep()
    configurations = args.configuration or [sweep.default]
    for name in configurations:
        sweep.resolve(name)  # an unknown name fails here, before any run starts
    for name in configurations:
        if status := run_and_report(run_config, name):
            return status
    return 0


def _predictor(explicit: str | None, command: str):
    """--model, else the champion, with the guard fitted for it; says on stderr which."""
    from brain_pipeline.core.locations import default_artifacts_dir
    from brain_pipeline.core.serving.source import ModelSource

    source = ModelSource(default_artifacts_dir(), Path(explicit) if explicit else None)
    choice = source.choose()
    print(f"brain-pipeline {command}: model {choice.version} ({choice.how})", file=sys.stderr)
    _warn_without_preprocessing_record(choice.path)
    predictor = source.load(choice)
    if predictor.guard is None:
        print(
            "warning: no out-of-distribution guard was fitted for this model (materialize "
            "ood_guard): every image gets a class and in_distribution is null",
            file=sys.stderr,
        )
    return predictor


def _warn_without_preprocessing_record(model_path: Path) -> None:
    """A bare .keras file (user-supplied weights) is preprocessed as this project trains by
    default, at the model's input size; say so."""
    from brain_pipeline.core.artifact_names import PREPROCESSING
    from brain_pipeline.core.imaging.preprocessing import Preprocessing

    if not Preprocessing.record_path(model_path).exists():
        print(
            f"warning: no {PREPROCESSING} beside {model_path}; preprocessing as this project "
            " trains by default. If the model was trained otherwise, write that file "
            'beside it, e.g. {"image_size": 96, "skull_strip": false, "intensity": "percentile"}',
            file=sys.stderr,
        )


def _load_inputs(paths: list[str], predictor):
    """Prepare each file; failures become per-file error messages, not an abort."""
    from brain_pipeline.core.imaging.preprocessing import load_image

    prepared, errors = {}, {}
    for path in paths:
        try:
            prepared[path] = predictor.prepare(load_image(Path(path)))
        except FileNotFoundError:
            errors[path] = "file not found"
        except Exception as exc:  # any undecodable input is reported, the rest still run
            errors[path] = f"cannot read as an image: {type(exc).__name__}: {exc}"
    return prepared, errors


def _predict(args: argparse.Namespace) -> int:
    pattern = _group_pattern(args.group_pattern) if args.by_subject else None
    predictor = _predictor(args.model, "predict")
    prepared, errors = _load_inputs(args.images, predictor)
    answers = dict(zip(prepared, predictor.run(list(prepared.values())), strict=True))
    for path in args.images:
        if path in errors:
            print(json.dumps({"path": path, "error": errors[path]}))
            print(f"brain-pipeline predict: {path}: {errors[path]}", file=sys.stderr)
        else:
            print(json.dumps({"path": path, **answers[path]}))
    if args.by_subject:
        from brain_pipeline.core.serving.subjects import per_subject

        for record in per_subject(list(answers), list(answers.values()), pattern):
            print(json.dumps(record))
    return 1 if errors else 0


def _group_pattern(text: str | None):
    """The --group-pattern regex compiled, or the built-in layouts' (None); exits on a bad one."""
    from brain_pipeline.core.data.subjects import compile_group_pattern

    if text is None:
        return None
    try:
        return compile_group_pattern(text)
    except ValueError as exc:
        raise SystemExit(f"brain-pipeline predict: --group-pattern: {exc}") from exc


def _explain(args: argparse.Namespace) -> int:
    from brain_pipeline.core.artifacts import write_figure
    from brain_pipeline.core.explain.overlays import original_view, render_original_overlays
    from brain_pipeline.core.imaging.preprocessing import load_image

    predictor = _predictor(args.model, "explain")
    try:
        image = load_image(Path(args.image))
        mask_path = Path(args.mask) if args.mask else _mask_beside(Path(args.image))
        mask = _lesion_mask(mask_path)
        item = predictor.prepare(image)
    except Exception as exc:  # unreadable image or mask: say which, no traceback
        print(f"brain-pipeline explain: {exc}", file=sys.stderr)
        return 1
    answer, heatmap = predictor.explain(item, method=args.method)
    if answer["in_distribution"] is False:
        print(json.dumps({"path": args.image, **answer}))
        print(f"brain-pipeline explain: {args.image}: {answer['note']}", file=sys.stderr)
        return 1
    predicted = answer["predicted_class"]
    title = f"{predicted} ({answer['probabilities'][predicted]:.2f})"
    try:
        view = original_view(image, heatmap, mask)
    except ValueError as exc:
        print(f"brain-pipeline explain: {mask_path}: {exc}", file=sys.stderr)
        return 1
    name = Path(args.image).name
    figure = render_original_overlays([view], [title], suptitle=name, method=args.method)
    write_figure(Path(args.out), figure)
    summary = {k: answer[k] for k in ("predicted_class", "in_distribution", "ood_score")}
    report = {"path": args.image, **summary, "probability": answer["probabilities"][predicted]}
    report |= {"method": args.method, "overlay": str(args.out)}
    print(json.dumps(report | {"lesion_mask": None if mask_path is None else str(mask_path)}))
    return 0


def _mask_beside(image: Path) -> Path | None:
    """The `<stem>_mask.<image suffix>` file beside an image (the kaggle_3m layout), if any."""
    from brain_pipeline.core.data.mask_conventions import MASK_SUFFIX
    from brain_pipeline.core.data.sources import IMAGE_SUFFIXES

    for suffix in sorted(IMAGE_SUFFIXES):
        candidate = image.with_name(f"{image.stem}{MASK_SUFFIX}{suffix}")
        if candidate.is_file():
            return candidate
    return None


def _lesion_mask(path: Path | None):
    """The whole-tumour mask of a mask file, or None; an unreadable file names itself."""
    from brain_pipeline.core.data.lesions import read_lesion_mask

    if path is None:
        return None
    try:
        return read_lesion_mask(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read as a lesion mask: {exc}") from exc


def _export(args: argparse.Namespace) -> int:
    """Export, then load the export with its own runtime and compare it with Keras."""
    import numpy as np

    from brain_pipeline.core.locations import default_artifacts_dir, default_data_dir
    from brain_pipeline.core.serving import export

    predictor = _predictor(args.model, "export")
    if args.images:
        prepared, errors = _load_inputs(sorted(map(str, Path(args.images).iterdir())), predictor)
        inputs = np.stack([item.tensor for item in prepared.values()]) if prepared else None
        if inputs is None:
            raise FileNotFoundError(f"no readable image in {args.images}")
    else:
        inputs = export.test_split_inputs(
            predictor.model_path,
            predictor.preprocessing,
            default_data_dir(),
            default_artifacts_dir(),
        )
    started = time.perf_counter()
    target = export.export_model(predictor.model, args.format, Path(args.out))
    _, expected = predictor.features_and_probabilities(inputs)
    got = export.run_export(target, args.format, inputs)
    report = export.ExportReport(
        format=args.format,
        path=str(target),
        model_version=predictor.version,
        n_images=len(inputs),
        max_abs_difference=float(np.abs(got - expected).max()),
        tolerance=export.TOLERANCE,
        seconds=round(time.perf_counter() - started, 2),
    )
    export.bundle(Path(args.out), predictor.model_path, predictor.guard_folder, report)
    print(json.dumps({**vars(report), "passed": report.passed}))
    if not report.passed:
        print(
            f"brain-pipeline export: the {args.format} export differs from the Keras model by "
            f"{report.max_abs_difference:.2e} (more than {export.TOLERANCE:g})",
            file=sys.stderr,
        )
    return 0 if report.passed else 1


def _lineage(args: argparse.Namespace) -> int:
    from brain_pipeline.core.lineage import render_text, trace

    node = trace(Path(args.path))
    if args.json:
        print(json.dumps(node.as_dict(), indent=2, default=str))
    else:
        print("\n".join(render_text(node)))
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
    run.add_argument("--config", help="JSON run config (the launchpad's, as JSON)")
    run.add_argument(
        "--configuration",
        action="append",
        metavar="NAME",
        help="training configuration of the sweep file (the partition) to train; repeat for "
        "several, one run each (default: the sweep's default)",
    )
    run.set_defaults(handler=_materialize)

    predict = commands.add_parser("predict", help="classify images; one JSON object per image")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--model", help=".keras file (default: the champion model)")
    predict.add_argument(
        "--by-subject",
        action="store_true",
        help="also one JSON object per subject: the mean over its slices, with their agreement",
    )
    predict.add_argument(
        "--group-pattern",
        metavar="REGEX",
        help="reads the subject from a path: a (?P<subject>...) group (default: the ADNI "
        "<scan>_<slice> and LGG TCGA_<inst>_<patient>_<date>/ layouts)",
    )
    predict.set_defaults(handler=_predict)

    explain = commands.add_parser(
        "explain", help="predicted class and an explanation overlay on the original image"
    )
    explain.add_argument("image", metavar="IMAGE")
    explain.add_argument("--out", required=True, help="where to write the overlay PNG")
    explain.add_argument("--model", help=".keras file (default: the champion model)")
    explain.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD)
    explain.add_argument(
        "--mask",
        help="a lesion mask of the image, outlined on the overlay (default: IMAGE's "
        "<stem>_mask.<suffix> beside it, where one exists)",
    )
    explain.set_defaults(handler=_explain)

    lineage = commands.add_parser(
        "lineage", help="trace an artifact back through every step to the raw images"
    )
    lineage.add_argument("path", metavar="PATH", help="any file the pipeline wrote")
    lineage.add_argument("--json", action="store_true", help="machine-readable output")
    lineage.set_defaults(handler=_lineage)
    _add_model_commands(commands)
    _add_serving_commands(commands)
    _add_service_commands(commands)
    return parser


def _add_serving_commands(commands) -> None:
    serve = commands.add_parser(
        "serve", help="HTTP service: /predict, /explain, /health, /model (docs at /docs)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model", help=".keras file (default: the champion, reloaded on change)")
    serve.add_argument("--max-upload-mb", type=float, default=20.0, help="per image")
    serve.add_argument(
        "--max-megapixels", type=float, default=40.0, help="per image, read from its header"
    )
    serve.add_argument("--max-images", type=int, default=64, help="per request")
    serve.add_argument("--max-batch", type=int, default=32, help="images per forward pass")
    serve.add_argument(
        "--batch-wait-ms", type=float, default=5.0, help="how long a batch waits for company"
    )
    serve.add_argument(
        "--reload-seconds",
        type=float,
        default=5.0,
        help="how often the champion is re-read (0: only on SIGHUP)",
    )
    serve.set_defaults(handler=_serve)

    export = commands.add_parser(
        "export", help="write the model as saved_model, onnx or tflite, verified against Keras"
    )
    export.add_argument("out", metavar="OUT", help="folder to write the export into")
    export.add_argument("--format", required=True, choices=["saved_model", "onnx", "tflite"])
    export.add_argument("--model", help=".keras file (default: the champion model)")
    export.add_argument(
        "--images", help="verify on these images (default: the model's own test split)"
    )
    export.set_defaults(handler=_export)


def _serve(args: argparse.Namespace) -> int:
    from brain_pipeline.apps.api import ServeSettings, serve
    from brain_pipeline.core.locations import default_artifacts_dir
    from brain_pipeline.core.serving.decoding import UploadLimits
    from brain_pipeline.core.serving.source import ModelSource

    source = ModelSource(default_artifacts_dir(), Path(args.model) if args.model else None)
    choice = source.choose()  # fails here, with a message, when there is nothing to serve
    print(f"brain-pipeline serve: model {choice.version} ({choice.how})", file=sys.stderr)
    limits = UploadLimits(
        max_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=int(args.max_megapixels * 1_000_000),
        max_images=args.max_images,
    )
    settings = ServeSettings(
        limits=limits,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        reload_seconds=0.0 if args.model else args.reload_seconds,
    )
    serve(source, args.host, args.port, settings)
    return 0


def _add_model_commands(commands) -> None:
    models = commands.add_parser(
        "models", help="every evaluated model version: status, metrics, energy"
    )
    models.add_argument("--json", action="store_true", help="one JSON object per version")
    models.set_defaults(handler=_models)
    actions = models.add_subparsers(dest="action")
    promote = actions.add_parser("promote", help="make VERSION the champion (rollback/forward)")
    promote.add_argument("version", metavar="VERSION")
    promote.set_defaults(handler=_promote)


def _models(args: argparse.Namespace) -> int:
    from brain_pipeline.apps.models_report import models_table, render_models

    table = models_table()
    if args.json:
        for row in table.to_dict("records"):
            print(json.dumps(row, default=str))
    else:
        print(render_models(table))
    return 0


def _promote(args: argparse.Namespace) -> int:
    from brain_pipeline.apps.models_report import promote

    line = promote(args.version)
    print(
        f"{line['serving_version']} is the champion (was {line['champion_version']}); "
        "recorded as a manual promotion"
    )
    return 0


def _add_service_commands(commands) -> None:
    service = commands.add_parser(
        "service", help="the team instance: PostgreSQL, webserver and daemon (docs/deploy.md)"
    )
    service.add_argument("--home", default="dagster_service", help="instance folder")
    service.add_argument("--host", default="127.0.0.1", help="address the UI binds to")
    service.add_argument("--port", type=int, default=3000)
    service.set_defaults(handler=_service)

    worker = commands.add_parser("worker", help="a Celery worker that executes pipeline steps")
    worker.add_argument(
        "--queue",
        action="append",
        help="queue to take steps from (repeatable; default: dagster and training)",
    )
    worker.add_argument("--name", default="brain-pipeline", help="worker name (@host is added)")
    worker.add_argument("--concurrency", type=int, default=1, help="steps at a time")
    worker.set_defaults(handler=_worker)


def _service(args: argparse.Namespace) -> int:
    from brain_pipeline.apps.service import ServiceError, run_service

    try:
        return run_service(Path(args.home), args.host, args.port)
    except ServiceError as exc:
        print(f"brain-pipeline service: error: {exc}", file=sys.stderr)
        return 2


def _worker(args: argparse.Namespace) -> int:
    """A Celery worker (prefork pool: a killed step fails its run instead of vanishing)."""
    from brain_pipeline.apps.service import with_pg_defaults

    os.environ.update(with_pg_defaults(os.environ))
    from brain_pipeline.apps.celery_app import app
    from brain_pipeline.defs.executors import TRAINING_QUEUE

    queues = args.queue or ["dagster", TRAINING_QUEUE]
    app.worker_main(
        ["worker", "-Q", ",".join(queues), "-n", f"{args.name}@%h"]
        + ["-c", str(args.concurrency), "-l", "INFO", "--without-gossip", "--without-mingle"]
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Not for `worker`: its pool forks processes that run TensorFlow, which deadlocks in a
    # child forked after TensorFlow ran in the parent.
    if args.command not in ("synth", "service", "worker"):
        from brain_pipeline.apps.console import quiet_start_up

        quiet_start_up()
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"brain-pipeline {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
