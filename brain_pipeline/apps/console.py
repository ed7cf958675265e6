"""`brain-pipeline materialize`: the whole graph in this process, printed for a person.

The run goes to a persistent instance (``$DAGSTER_HOME``, else ``./dagster_home``, given a
``dagster.yaml`` when created here) so the UI shows it afterwards. The terminal gets one line
per step started and finished, the assets' own progress (files decoded, epochs, ...), each
check's verdict, and a summary last; Dagster's debug events, beta warnings and TensorFlow's
start-up chatter stay out of it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

INSTANCE_YAML = """\
# The Dagster instance of `brain-pipeline materialize` and `dagster dev`: run history, event
# logs and schedules in SQLite files in this folder. For a shared instance on PostgreSQL,
# see docs/deploy.md.
telemetry:
  enabled: false
"""

HEADLINE_METADATA = (
    "n_files",
    "n_rejected",
    "n_rows",
    "n_near_duplicate_groups",
    "resaved_copies_merged",
    "n_train",
    "n_test",
    "epochs_run",
    "val_accuracy",
    "accuracy",
    "f1_macro",
    "pointing_game_whole_tumour",
    "pointing_game_whole_tumour_chance",
    "heat_in_brain",
    "energy_kwh",
    "n_model_versions",
    "decision",
    "champion_version",
)


def prepare_home() -> Path:
    """$DAGSTER_HOME (default ./dagster_home), created with a dagster.yaml if it has none."""
    home = Path(os.environ.get("DAGSTER_HOME") or "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(INSTANCE_YAML)
    return home


def _progress_line(record: logging.LogRecord, asset_steps: set[str]) -> str | None:
    """The line to print for a log record, or None to keep it off the terminal."""
    meta = getattr(record, "dagster_meta", None) or {}
    event, step = meta.get("dagster_event"), meta.get("step_key") or ""
    message = meta.get("orig_message", record.getMessage())
    kind = event.event_type_value if event is not None else None
    if kind == "ASSET_CHECK_EVALUATION":
        step, text = _check_verdict(event.event_specific_data)
    elif kind == "STEP_FAILURE":
        text = _failure_text(event.event_specific_data.error) or message
    elif kind == "STEP_START" and step in asset_steps:
        text = "started"
    elif kind == "STEP_SUCCESS" and step in asset_steps:
        text = f"done in {event.event_specific_data.duration_ms / 1000:.1f} s"
    elif kind is None and record.levelno >= logging.INFO and (not step or step in asset_steps):
        text = message  # an asset's own progress, or the engine's word on a skipped asset
    else:
        return None
    stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
    return f"{stamp}  {step.replace('__', '/'):<24} {text}"


def _failure_text(error) -> str | None:
    """The exception the asset raised, with its traceback, not Dagster's wrapper around it."""
    if error is None:
        return None
    while error.cause is not None:
        error = error.cause
    return f"FAILED: {error.to_string().strip()}"


def _check_verdict(evaluation: dg.AssetCheckEvaluation) -> tuple[str, str]:
    if evaluation.passed:
        verdict = "passed"
    elif evaluation.severity == dg.AssetCheckSeverity.WARN:
        verdict = "WARNING"
    else:
        verdict = "FAILED"
    details = f": {evaluation.description}" if evaluation.description else ""
    return (
        evaluation.asset_key.to_user_string(),
        f"check {evaluation.check_name} {verdict}{details}",
    )


class _ProgressHandler(logging.Handler):
    """Writes to whatever `sys.stdout` is when a line comes (not the one at set-up, which a
    caller that redirected it may have closed since)."""

    def __init__(self, asset_steps: set[str]) -> None:
        super().__init__()
        self._asset_steps = asset_steps

    def emit(self, record: logging.LogRecord) -> None:
        line = _progress_line(record, self._asset_steps)
        if line is not None:
            print(line, file=sys.stdout, flush=True)


def progress_logger(asset_steps: set[str]) -> dg.LoggerDefinition:
    """A logger printing each asset step's start and end, each check's verdict and the
    assets' own progress messages (files decoded, epochs); no debug events."""

    @dg.logger(description="One line per asset step, check and progress message.")
    def _progress(init_context: dg.InitLoggerContext) -> logging.Logger:
        logger = logging.getLogger("brain_pipeline.progress")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.handlers = [_ProgressHandler(asset_steps)]
        return logger

    return _progress


@contextmanager
def _stderr_file_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null: C++ code writes there, not to sys.stderr."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_start_up() -> None:
    """Keep Dagster's beta notices and TensorFlow's start-up chatter off the terminal.

    TensorFlow writes its first log lines (oneDNN notice, CUDA probing) from C++ before its
    log level applies, once at import and once at the first operation; both happen here
    with the process's stderr silenced. An import error still raises, after stderr is back.
    """
    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category)
    with _stderr_file_silenced():
        import tensorflow as tf

        tf.constant(1.0) + 1.0


def run_and_report(run_config: dict, configuration: str) -> int:
    """Materialize the full_pipeline job for one training configuration (its partition);
    print a summary of every asset last."""
    from brain_pipeline.definitions import FULL_PIPELINE_JOB, build_definitions

    home = prepare_home()
    steps: set[str] = set()  # filled below: the logger reads it only once the run starts
    defs = build_definitions(loggers={"progress": progress_logger(steps)})
    steps.update("__".join(key.path) for key in defs.resolve_asset_graph().get_all_asset_keys())
    run_config = {**run_config, "loggers": {"progress": {}}}
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        print(f"training configuration: {configuration}")
        result = defs.resolve_job_def(FULL_PIPELINE_JOB).execute_in_process(
            run_config=run_config,
            instance=instance,
            partition_key=configuration,
            raise_on_error=False,
        )
        seconds = time.perf_counter() - started
        if not result.success:
            print(f"\nrun {result.run_id} FAILED after {seconds:.0f} s; see above", file=sys.stderr)
            return 1
        print(f"\nrun {result.run_id} succeeded in {seconds:.0f} s (DAGSTER_HOME={home})")
        for line in summary_lines(instance, defs):
            print(line)
    return 0


def summary_lines(instance: dg.DagsterInstance, defs: dg.Definitions) -> list[str]:
    """Each asset's artifact path and headline figures, in graph order."""
    lines = []
    for key in defs.resolve_asset_graph().toposorted_asset_keys:
        event = instance.get_latest_materialization_event(key)
        if event is None:
            continue
        metadata = event.asset_materialization.metadata
        headline = {
            # 4 significant digits: energies are tiny numbers of kWh, not zero.
            name: float(f"{metadata[name].value:.4g}")
            if isinstance(metadata[name].value, float)
            else metadata[name].value
            for name in HEADLINE_METADATA
            if name in metadata
        }
        lines.append(f"  {key.to_user_string():<17} {metadata['path'].value}")
        if headline:
            lines.append(f"  {'':<17} {headline}")
    return lines
