"""`brain-pipeline`: synthesise data, run the pipeline, predict, explain, trace lineage."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _synth(args: argparse.Namespace) -> int:
    from brain_pipeline.core.phantoms import synthesize_datasets

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
    from brain_pipeline.console import run_and_report
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


def _champion() -> dict:
    """The serving champion's line of the promotion history (artifacts root of this shell)."""
    from brain_pipeline.core.locations import default_artifacts_dir
    from brain_pipeline.core.model.promotion import PromotionHistory

    registry = default_artifacts_dir() / "model_registry"
    champion = PromotionHistory(registry).champion()
    if champion is None:
        raise FileNotFoundError(
            f"no champion model in {registry}: run `brain-pipeline materialize` (it trains, "
            "evaluates and promotes a model), or pass --model PATH"
        )
    return champion


def _model_path(explicit: str | None, command: str) -> Path:
    """--model, else the champion's model; says on stderr which model answers."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist")
        print(f"brain-pipeline {command}: model {path} (--model)", file=sys.stderr)
        return path
    champion = _champion()
    path = Path(champion["model_path"])
    if not path.is_file():
        raise FileNotFoundError(
            f"the champion {champion['serving_version']}'s model file {path} no longer exists; "
            "promote another version (`brain-pipeline models`) or pass --model PATH"
        )
    print(
        f"brain-pipeline {command}: model {champion['serving_version']} (champion)",
        file=sys.stderr,
    )
    return path


def _preprocessing_for(model_path: Path, input_size: int):
    """The preprocessing recorded beside the model; for a bare .keras file (user-supplied
    weights), this project's training defaults at the model's input size, with a warning."""
    from brain_pipeline.core.imaging.preprocessing import Preprocessing
    from brain_pipeline.core.model.training import TrainingConfig

    if Preprocessing.record_path(model_path).exists():
        return Preprocessing.for_model(model_path, input_size)
    assumed = TrainingConfig(image_size=input_size).preprocessing
    print(
        f"warning: no {Preprocessing.FILE_NAME} beside {model_path}; preprocessing as this "
        f"project trains by default ({assumed}). If the model was trained otherwise, write "
        f"that file beside it, e.g. "
        f'{{"image_size": {input_size}, "skull_strip": false, "intensity": "percentile"}}',
        file=sys.stderr,
    )
    return assumed


def _load_model(explicit: str | None, command: str):
    """The model and the preprocessing it was trained with."""
    import keras

    path = _model_path(explicit, command)
    model = keras.models.load_model(path)
    return model, _preprocessing_for(path, int(model.input_shape[1]))


def _load_inputs(paths: list[str], preprocessing):
    """Preprocess each file; failures become per-file error messages, not an abort."""
    from brain_pipeline.core.imaging.preprocessing import load_image

    tensors, errors = {}, {}
    for path in paths:
        try:
            tensors[path] = preprocessing.apply(load_image(Path(path)))[0]
        except FileNotFoundError:
            errors[path] = "file not found"
        except Exception as exc:  # any undecodable input is reported, the rest still run
            errors[path] = f"cannot read as an image: {type(exc).__name__}: {exc}"
    return tensors, errors


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from brain_pipeline.core.data.sources import TARGET_CLASSES

    model, preprocessing = _load_model(args.model, "predict")
    tensors, errors = _load_inputs(args.images, preprocessing)
    probabilities = model.predict(np.stack(list(tensors.values())), verbose=0) if tensors else []
    by_path = dict(zip(tensors, probabilities, strict=True))
    for path in args.images:
        if path in errors:
            print(json.dumps({"path": path, "error": errors[path]}))
            print(f"brain-pipeline predict: {path}: {errors[path]}", file=sys.stderr)
            continue
        scores = by_path[path]
        print(
            json.dumps(
                {
                    "path": path,
                    "predicted_class": TARGET_CLASSES[int(np.argmax(scores))],
                    "probabilities": {
                        c: round(float(p), 6) for c, p in zip(TARGET_CLASSES, scores, strict=True)
                    },
                }
            )
        )
    return 1 if errors else 0


def _explain(args: argparse.Namespace) -> int:
    import numpy as np

    from brain_pipeline.core.artifacts import write_figure
    from brain_pipeline.core.data.sources import TARGET_CLASSES
    from brain_pipeline.core.explain.heatmaps import gradcam
    from brain_pipeline.core.plots import render_gallery

    model, preprocessing = _load_model(args.model, "explain")
    tensors, errors = _load_inputs([args.image], preprocessing)
    if errors:
        print(f"brain-pipeline explain: {args.image}: {errors[args.image]}", file=sys.stderr)
        return 1
    image = tensors[args.image][np.newaxis]
    scores = model.predict(image, verbose=0)[0]
    predicted = int(np.argmax(scores))
    heatmap = gradcam(model, image, np.array([predicted]), method=args.method)
    title = f"{TARGET_CLASSES[predicted]} ({scores[predicted]:.2f})"
    figure = render_gallery(image, heatmap, [title], columns=1, suptitle=Path(args.image).name)
    write_figure(Path(args.out), figure)
    print(
        json.dumps(
            {
                "path": args.image,
                "predicted_class": TARGET_CLASSES[predicted],
                "probability": round(float(scores[predicted]), 6),
                "method": args.method,
                "overlay": str(args.out),
            }
        )
    )
    return 0


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
    predict.set_defaults(handler=_predict)

    explain = commands.add_parser("explain", help="predicted class and a Grad-CAM overlay")
    explain.add_argument("image", metavar="IMAGE")
    explain.add_argument("--out", required=True, help="where to write the overlay PNG")
    explain.add_argument("--model", help=".keras file (default: the champion model)")
    explain.add_argument("--method", choices=["gradcam", "gradcam++"], default="gradcam")
    explain.set_defaults(handler=_explain)

    lineage = commands.add_parser(
        "lineage", help="trace an artifact back through every step to the raw images"
    )
    lineage.add_argument("path", metavar="PATH", help="any file the pipeline wrote")
    lineage.add_argument("--json", action="store_true", help="machine-readable output")
    lineage.set_defaults(handler=_lineage)
    _add_model_commands(commands)
    _add_service_commands(commands)
    return parser


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
    from brain_pipeline.models_report import models_table, render_models

    table = models_table()
    if args.json:
        for row in table.to_dict("records"):
            print(json.dumps(row, default=str))
    else:
        print(render_models(table))
    return 0


def _promote(args: argparse.Namespace) -> int:
    from brain_pipeline.models_report import promote

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
    from brain_pipeline.service import ServiceError, run_service

    try:
        return run_service(Path(args.home), args.host, args.port)
    except ServiceError as exc:
        print(f"brain-pipeline service: error: {exc}", file=sys.stderr)
        return 2


def _worker(args: argparse.Namespace) -> int:
    """A Celery worker (prefork pool: a killed step fails its run instead of vanishing)."""
    from brain_pipeline.service import with_pg_defaults

    os.environ.update(with_pg_defaults(os.environ))
    from brain_pipeline.celery_app import app
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
        from brain_pipeline.console import quiet_start_up

        quiet_start_up()
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"brain-pipeline {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
