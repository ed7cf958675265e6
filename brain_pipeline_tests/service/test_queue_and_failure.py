"""The run queue (daemon, QueuedRunCoordinator, training pool) and a worker lost mid-step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from brain_pipeline.core.model.leaderboard import model_version_of
from brain_pipeline.core.model.promotion import PromotionHistory
from brain_pipeline_tests.conftest import FAST_RUN
from brain_pipeline_tests.service.conftest import (
    BIN,
    PARTITION,
    REPO,
    celery_workers,
    dagster_daemon,
)
from brain_pipeline_tests.service.test_postgres_and_celery import (
    IN_PROCESS,
    _events,
    _seconds,
)

pytestmark = pytest.mark.services


def _wait_for_runs(instance, count: int, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = instance.get_runs()
        if len(runs) == count and all(run.is_finished for run in runs):
            return runs
        time.sleep(2)
    states = [(run.run_id[:8], run.status.value) for run in instance.get_runs()]
    raise TimeoutError(f"runs not finished after {timeout} s: {states}")


def _step_window(instance, run_id: str, step: str) -> tuple[float, float]:
    times = {
        entry.dagster_event.event_type_value: entry.timestamp
        for entry in _events(instance, run_id)
        if entry.dagster_event.step_key == step
    }
    return times["STEP_START"], times["STEP_SUCCESS"]


def _artifact(instance, run_id: str, asset: str) -> str:
    for entry in _events(instance, run_id):
        event = entry.dagster_event
        if event.event_type_value == "ASSET_MATERIALIZATION" and event.asset_key.path == [asset]:
            return event.event_specific_data.materialization.metadata["path"].value
    raise KeyError(asset)


def test_four_runs_submitted_at_once_all_complete_one_training_at_a_time(deployments, tmp_path):
    deployment = deployments()
    with dagster_daemon(deployment, tmp_path):
        started = time.monotonic()
        launches = []
        for seed in range(4):  # four trainings; the data steps are shared and reused
            config = tmp_path / f"run{seed}.json"
            run_config = json.loads(json.dumps(FAST_RUN))
            run_config["ops"]["trained_model"]["config"]["seed"] = seed
            run_config.update(IN_PROCESS)
            config.write_text(json.dumps(run_config))
            launches.append(
                subprocess.Popen(
                    [
                        str(BIN / "dagster"),
                        "job",
                        "launch",
                        "-w",
                        str(REPO / "workspace.yaml"),
                        "-j",
                        "full_pipeline",
                        *PARTITION,
                        "-c",
                        str(config),
                    ],
                    env=deployment.env,
                    cwd=REPO,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        for launch in launches:
            output, _ = launch.communicate(timeout=300)
            assert launch.returncode == 0, output[-2000:]
        instance = deployment.instance()
        runs = _wait_for_runs(instance, 4, timeout=900)
        wall = time.monotonic() - started
    assert all(run.is_success for run in runs), [run.status for run in runs]
    models = {_artifact(instance, run.run_id, "trained_model") for run in runs}
    assert len(models) == 4  # a model of its own for every run, none lost
    windows = sorted(_step_window(instance, run.run_id, "trained_model") for run in runs)
    for (_, end), (start, _) in zip(windows, windows[1:], strict=False):
        assert start >= end - 1.0, windows  # the training pool: one training at a time
    assert instance.event_log_storage.get_concurrency_info("training").slot_count == 1
    # Four champion decisions made by concurrent runs: one whole line each in the history.
    decisions = PromotionHistory(deployment.artifacts / "model_registry").records()
    assert len(decisions) == 4
    versions = {Path(model).parent.name for model in models}
    assert {d["challenger_version"].split("@")[1] for d in decisions} == versions
    assert decisions[0]["reason"] == "no champion yet"
    print(
        f"four queued runs: {wall:.1f} s wall, runs "
        + ", ".join(f"{_seconds(instance, run.run_id):.1f} s" for run in runs)
    )


def test_a_backfill_of_two_configurations_trains_both_and_ranks_them(deployments, tmp_path):
    """`dagster job backfill` over two partitions, executed by the daemon as the UI's
    backfill is: one run per configuration, two leaderboard rows with measured energy."""
    deployment = deployments()
    with dagster_daemon(deployment, tmp_path):
        launched = deployment.run(
            str(BIN / "dagster"),
            "job",
            "backfill",
            "-w",
            str(REPO / "workspace.yaml"),
            "-j",
            "full_pipeline",
            "--partitions",
            "compact_64_short,compact_96",
            "--noprompt",
        )
        assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-2000:]
        instance = deployment.instance()
        # Two whole runs one after the other: 12 min on this machine at its slowest, so the
        # bound leaves room (a bound on a hang, not a speed target).
        runs = _wait_for_runs(instance, 2, timeout=1800)
    assert all(run.is_success for run in runs), [run.status for run in runs]
    assert sorted(run.tags["dagster/partition"] for run in runs) == [
        "compact_64_short",
        "compact_96",
    ]
    last = max(runs, key=lambda run: instance.get_run_record_by_id(run.run_id).end_time)
    board = pd.read_parquet(_artifact(instance, last.run_id, "leaderboard"))
    assert sorted(board["configuration"]) == ["compact_64_short", "compact_96"]
    assert (board["energy_kwh"] > 0).all() and (board["co2_g"] > 0).all()
    for configuration in board["configuration"]:
        assert (deployment.artifacts / "trained_model" / configuration).is_dir()


REEXECUTE = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    repository = ReconstructableRepository.for_module("brain_pipeline.definitions", "defs", ".")
    job = repository.get_reconstructable_job("full_pipeline")
    with dg.DagsterInstance.get() as instance:
        options = dg.ReexecutionOptions.from_failure(sys.argv[1], instance)
        # The same training configuration (partition) as the failed run.
        partition = instance.get_run_by_id(sys.argv[1]).tags["dagster/partition"]
        result = dg.execute_job(
            job, instance, reexecution_options=options, tags={"dagster/partition": partition}
        )
        print(result.run_id, result.success)
    """
)


def test_a_worker_killed_mid_step_fails_the_run_and_reexecution_completes(deployments, tmp_path):
    deployment = deployments(BRAIN_PIPELINE_EXECUTOR="celery")
    slower = json.loads(json.dumps(FAST_RUN))
    slower["ops"]["trained_model"]["config"]["epochs"] = 20
    deployment.config.write_text(json.dumps(slower))
    with celery_workers(deployment, ["solo"], tmp_path), dagster_daemon(deployment, tmp_path):
        run = deployment.start_job()
        instance = deployment.instance()
        step_pid = _wait_for_step_start(instance, "trained_model", timeout=600)
        time.sleep(3)  # mid-step: the model is training
        os.kill(step_pid, signal.SIGKILL)
        output, _ = run.communicate(timeout=300)
        assert run.returncode != 0
        (failed,) = instance.get_runs()
        assert failed.is_failure
        messages = " ".join(
            (e.dagster_event.message or "") + str(e.dagster_event.event_specific_data or "")
            for e in _events(instance, failed.run_id)
        )
        assert "WorkerLostError" in messages or "exited prematurely" in messages, output[-3000:]
        again = deployment.run(str(BIN / "python"), "-c", REEXECUTE, failed.run_id)
    assert again.returncode == 0 and again.stdout.split()[-1] == "True", again.stderr[-3000:]
    rerun_id = again.stdout.split()[-2]
    model = _artifact(instance, rerun_id, "trained_model")
    evaluated = json.loads(Path(_artifact(instance, rerun_id, "model_evaluation")).read_text())
    # Downstream read the re-executed model, not whatever the killed step left behind.
    assert evaluated["model_version"] == model_version_of(Path(model).parent)


def _wait_for_step_start(instance, step: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in instance.get_runs():
            for entry in _events(instance, run.run_id):
                event = entry.dagster_event
                if event.event_type_value == "STEP_START" and event.step_key == step:
                    return event.pid
        time.sleep(0.5)
    raise TimeoutError(f"{step} did not start within {timeout} s")
